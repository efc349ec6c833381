using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Commands;

/// <summary>
/// Marks commands whose time to live passed <c>expired</c> (<see cref="ICommandStore.ExpireDueCommandsAsync"/>) every
/// <see cref="Interval"/>, and announces each so a waiter answers at once. A sweep that fails is logged and retried after
/// a doubling, jittered wait up to <see cref="MaxBackoff"/>; the loop ends only with the host. Delivery never depends on
/// it: an expired command is not delivered even before the sweep marks it. Any instance may sweep (PostgreSQL skips rows
/// another instance holds).
/// </summary>
internal sealed partial class CommandExpirySweeper(ICommandStore store, CommandService commands, TimeProvider timeProvider, ILogger<CommandExpirySweeper> logger, Diagnostics.ServerMetrics metrics) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan MaxBackoff = TimeSpan.FromMinutes(2);

    /// <summary>Most sweeps run back to back while each is full, before the loop waits again.</summary>
    private const int MaxSweepsInARow = 10;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(failures == 0 ? Interval : Backoff(failures), timeProvider, stoppingToken).ConfigureAwait(false);
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
                LogSweepFailed(logger, failures, Backoff(failures), ex.Message);
            }
        }
    }

    /// <summary>One sweep: expires what is due (repeating while a batch is full, up to <see cref="MaxSweepsInARow"/>) and announces each.</summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        var total = 0;
        for (var i = 0; i < MaxSweepsInARow; i++)
        {
            var expired = await store.ExpireDueCommandsAsync(timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
            foreach (var command in expired)
            {
                await commands.AnnounceAsync(command.CommandId, cancellationToken).ConfigureAwait(false);
            }

            total += expired.Count;
            metrics.CommandState(Protocol.Messages.CommandStatuses.Expired, expired.Count);
            if (expired.Count < CommandRecord.ExpiryBatch)
            {
                break;
            }
        }

        if (total > 0)
        {
            LogExpired(logger, total);
        }

        return total;
    }

    /// <summary>The wait after <paramref name="failures"/> failed sweeps in a row.</summary>
    public static TimeSpan Backoff(int failures) => Commands.Backoff.After(failures, Interval, MaxBackoff);

    [LoggerMessage(EventId = 1805, Level = LogLevel.Information, Message = "{Count} commands expired before they finished")]
    private static partial void LogExpired(ILogger logger, int count);

    [LoggerMessage(EventId = 1806, Level = LogLevel.Warning, Message = "Expiring due commands failed ({Failures} in a row); trying again in {Backoff}: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, int failures, TimeSpan backoff, string reason);
}
