using Enroll.Protocol.Admin;
using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Refusals;

/// <summary>
/// Drains <see cref="RefusalLog"/> into <see cref="IRefusalStore"/> in batches of up to <see cref="BatchSize"/>, each one
/// write (the store folds it per minute, kind and source). Supervised: a failed write drops its batch (counted), is logged,
/// and the writer starts again after a backoff that doubles up to <see cref="MaxBackoff"/>, meanwhile the bounded queue
/// takes what arrives (and drops, counted, what it cannot).
/// </summary>
internal sealed partial class RefusalWriter(RefusalLog log, IRefusalStore store, TimeProvider timeProvider, ILogger<RefusalWriter> logger) : BackgroundService
{
    public const int BatchSize = 500;
    public static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromMinutes(1);

    private TimeSpan _backoff = FirstBackoff;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await DrainAsync(stoppingToken).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // the supervisor: any failure is logged and the writer starts again after a backoff
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogWriteFailed(logger, _backoff, ex);
                try
                {
                    await Task.Delay(_backoff, timeProvider, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                _backoff = TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    private async Task DrainAsync(CancellationToken stoppingToken)
    {
        var batch = new List<RefusalInfo>(BatchSize);
        while (await log.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
        {
            while (batch.Count < BatchSize && log.Reader.TryRead(out var refusal))
            {
                batch.Add(refusal);
            }

            try
            {
                await store.RecordRefusalsAsync(batch, stoppingToken).ConfigureAwait(false);
                _backoff = FirstBackoff;
            }
            catch (Exception) when (!stoppingToken.IsCancellationRequested)
            {
                log.Drop("store_failed", batch.Count);
                throw;
            }
            finally
            {
                batch.Clear();
            }
        }
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Refusal log: writing a batch to the registry failed (its refusals are dropped and counted); trying again in {Backoff}")]
    private static partial void LogWriteFailed(ILogger logger, TimeSpan backoff, Exception exception);
}
