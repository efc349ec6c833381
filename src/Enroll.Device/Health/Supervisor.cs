using Enroll.Device.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Enroll.Device;

/// <summary>
/// Runs a background loop so it never dies silently: an unexpected exception is logged with its cause, reported to
/// <see cref="DeviceHealth"/> as <see cref="DeviceFaultKind.Unexpected"/>, and the loop restarts after a jittered
/// exponential backoff (1 s doubling up to <see cref="MaxRestartDelay"/>). A loop that ran longer than the maximum delay
/// before failing starts again from the shortest delay.
/// </summary>
internal static class Supervisor
{
    public static readonly TimeSpan FirstRestartDelay = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxRestartDelay = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Runs <paramref name="loop"/> until it returns or <paramref name="stoppingToken"/> is cancelled, restarting it after
    /// every unexpected exception.
    /// </summary>
    public static async Task RunAsync(
        string component,
        Func<CancellationToken, Task> loop,
        DeviceHealth health,
        Jitter jitter,
        TimeProvider timeProvider,
        ILogger logger,
        CancellationToken stoppingToken)
    {
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            var started = timeProvider.GetTimestamp();
            try
            {
                await loop(stoppingToken).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // the supervisor is the last-chance handler of its loop: it logs, reports and restarts
            catch (Exception ex)
#pragma warning restore CA1031
            {
                failures = timeProvider.GetElapsedTime(started) > MaxRestartDelay ? 1 : failures + 1;
                var delay = jitter.Backoff(failures, FirstRestartDelay, MaxRestartDelay);
                Log.LoopFailed(logger, component, failures, delay, ex);
                health.Report(component, DeviceFaultKind.Unexpected, $"{ex.GetType().Name}: {ex.Message} (restarting in {delay.TotalSeconds:0.#} s)");
                try
                {
                    await Task.Delay(delay, timeProvider, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
