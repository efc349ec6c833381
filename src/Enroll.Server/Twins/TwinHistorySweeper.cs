using System.Security.Cryptography;
using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Twins;

/// <summary>
/// Keeps the desired-patch history bounded (SPEC §2.5: at least the last <see cref="KeepPerDevice"/> patches of each
/// device or <see cref="KeepFor"/>): every <see cref="Interval"/> it deletes the patches older than <see cref="KeepFor"/>
/// beyond each device's newest <see cref="KeepPerDevice"/> (<see cref="ITwinStore.PruneDesiredHistoryAsync"/>). A device
/// away for longer gets its whole desired document from twin/get. A failed sweep is logged and tried again after a
/// backoff (from <see cref="FirstRetry"/>, doubling up to <see cref="Interval"/>, spread at random so several instances
/// do not retry in step); the loop ends only with the host. Any instance may sweep; sweeps of several delete the same rows.
/// </summary>
internal sealed partial class TwinHistorySweeper(ITwinStore store, TimeProvider timeProvider, ILogger<TwinHistorySweeper> logger) : BackgroundService
{
    /// <summary>How long desired patches are kept at least.</summary>
    public static readonly TimeSpan KeepFor = TimeSpan.FromDays(7);

    /// <summary>How many of each device's newest desired patches are kept whatever their age.</summary>
    public const int KeepPerDevice = 100;

    /// <summary>The time between sweeps.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromHours(1);

    /// <summary>The wait before the first retry of a failed sweep.</summary>
    public static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(10);

    /// <summary>A number in [0, 1) that spreads retries; tests fix it.</summary>
    internal Func<double> Random { get; init; } = () => RandomNumberGenerator.GetInt32(1 << 30) / (double)(1 << 30);

    /// <summary>The wait after <paramref name="failures"/> sweeps in a row failed: <see cref="FirstRetry"/> doubling, at most <see cref="Interval"/>, spread over [wait / 2, wait).</summary>
    public TimeSpan RetryDelay(int failures)
    {
        var ticks = Math.Min(Interval.Ticks, FirstRetry.Ticks * Math.Pow(2, Math.Clamp(failures - 1, 0, 30)));
        return TimeSpan.FromTicks((long)(ticks * (0.5 + (Random() * 0.5))));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        var wait = Interval;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(wait, timeProvider, stoppingToken).ConfigureAwait(false);
                var pruned = await store.PruneDesiredHistoryAsync(timeProvider.GetUtcNow() - KeepFor, KeepPerDevice, stoppingToken).ConfigureAwait(false);
                failures = 0;
                wait = Interval;
                if (pruned > 0)
                {
                    LogPruned(logger, pruned);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // an exception out of a BackgroundService stops the host: a failed sweep is only tried again
            catch (Exception ex)
#pragma warning restore CA1031
            {
                failures++;
                wait = RetryDelay(failures);
                LogSweepFailed(logger, failures, wait, ex.Message);
            }
        }
    }

    [LoggerMessage(EventId = 1823, Level = LogLevel.Information, Message = "Pruned {Count} desired twin patches older than the history keeps")]
    private static partial void LogPruned(ILogger logger, int count);

    [LoggerMessage(EventId = 1824, Level = LogLevel.Warning, Message = "Pruning the desired twin history failed ({Failures} in a row); trying again in about {Retry}: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, int failures, TimeSpan retry, string reason);
}
