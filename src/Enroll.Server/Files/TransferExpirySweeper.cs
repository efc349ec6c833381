using System.Globalization;
using Enroll.Protocol.Transfers;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Files;

/// <summary>
/// Keeps the files aggregate bounded (SPEC §2.7): every <see cref="Interval"/> it removes transfers that received no chunk
/// for <see cref="EnrollServerOptions.IncompleteTransferExpiry"/> together with their staged bytes (freeing the device's
/// quota; the device learns from <c>transfers/status</c> that the server no longer knows them), and forgets finished
/// transfers after <see cref="TransferLimits.FinishedRetention"/>. At start it removes staged files no transfer under way
/// refers to (left by a crash between a completion and its clean-up). A sweep that fails is logged and retried after a
/// doubling, jittered wait; the loop ends only with the host. Any instance may sweep.
/// </summary>
internal sealed partial class TransferExpirySweeper(
    IFileStore files,
    IBlobStore blobs,
    ServerMetrics metrics,
    IOptions<EnrollServerOptions> options,
    TimeProvider timeProvider,
    ILogger<TransferExpirySweeper> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    public static readonly TimeSpan MaxBackoff = TimeSpan.FromMinutes(10);

    /// <summary>Transfers removed per registry write.</summary>
    public const int Batch = 100;

    /// <summary>Most batches per sweep, so one sweep holds the registry's writer for a bounded time.</summary>
    private const int MaxBatchesInARow = 10;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        var orphansRemoved = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!orphansRemoved)
                {
                    await RemoveOrphansAsync(stoppingToken).ConfigureAwait(false);
                    orphansRemoved = true;
                }

                await Task.Delay(failures == 0 ? Interval : Commands.Backoff.After(failures, Interval, MaxBackoff), timeProvider, stoppingToken).ConfigureAwait(false);
                await SweepAsync(stoppingToken).ConfigureAwait(false);
                failures = 0;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // the next sweep tries again; the host must not stop for one failed sweep
            catch (Exception ex)
#pragma warning restore CA1031
            {
                failures++;
                LogSweepFailed(logger, failures, ex.Message);
            }
        }
    }

    /// <summary>One sweep: removes idle transfers (repeating while a batch is full) and their staged bytes; how many.</summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        var now = timeProvider.GetUtcNow();
        var idleBefore = now - options.Value.IncompleteTransferExpiry;
        var total = 0;
        for (var i = 0; i < MaxBatchesInARow; i++)
        {
            var removed = await files.RemoveExpiredTransfersAsync(idleBefore, now - TransferLimits.FinishedRetention, Batch, cancellationToken).ConfigureAwait(false);
            foreach (var transfer in removed)
            {
                await blobs.DeleteStagedAsync(TransferIngest.BlobKey(transfer), cancellationToken).ConfigureAwait(false);
                metrics.TransferFinished(transfer.Kind, "expired");
            }

            total += removed.Count;
            if (removed.Count < Batch)
            {
                break;
            }
        }

        if (total > 0)
        {
            LogExpired(logger, total, options.Value.IncompleteTransferExpiry);
        }

        return total;
    }

    /// <summary>Removes the staged files whose transfer is not under way (unknown, finished, or a later start of its ID); how many.</summary>
    public async Task<int> RemoveOrphansAsync(CancellationToken cancellationToken)
    {
        var removed = 0;
        foreach (var key in blobs.ListStaged().ToList())
        {
            if (!TryParseKey(key, out var deviceId, out var transferId, out var startedAt)
                || await files.GetTransferAsync(deviceId, transferId, cancellationToken).ConfigureAwait(false) is not { State: TransferStates.Receiving } transfer
                || transfer.StartedAt.ToUnixTimeMilliseconds() != startedAt)
            {
                await blobs.DeleteStagedAsync(key, cancellationToken).ConfigureAwait(false);
                removed++;
            }
        }

        if (removed > 0)
        {
            LogOrphansRemoved(logger, removed);
        }

        return removed;
    }

    /// <summary>Reads a key made by <see cref="TransferIngest.BlobKey"/>: <c>{device}/{transfer}-{started at, Unix ms}</c>.</summary>
    private static bool TryParseKey(string key, out string deviceId, out string transferId, out long startedAt)
    {
        deviceId = transferId = string.Empty;
        startedAt = 0;
        var slash = key.IndexOf('/', StringComparison.Ordinal);
        var dash = key.LastIndexOf('-');
        if (slash <= 0 || dash <= slash + 1 || !long.TryParse(key.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out startedAt))
        {
            return false;
        }

        deviceId = key[..slash];
        transferId = key[(slash + 1)..dash];
        return true;
    }

    [LoggerMessage(EventId = 1910, Level = LogLevel.Information, Message = "Removed {Count} transfer(s) that received no chunk for {Expiry}, and their staged bytes")]
    private static partial void LogExpired(ILogger logger, int count, TimeSpan expiry);

    [LoggerMessage(EventId = 1911, Level = LogLevel.Information, Message = "Removed {Count} staged file(s) that no transfer under way refers to")]
    private static partial void LogOrphansRemoved(ILogger logger, int count);

    [LoggerMessage(EventId = 1912, Level = LogLevel.Warning, Message = "Removing expired transfers failed ({Failures} in a row); trying again after a backoff: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, int failures, string reason);
}
