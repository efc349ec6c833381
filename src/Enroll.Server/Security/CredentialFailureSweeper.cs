using Enroll.Server.Registry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Security;

/// <summary>
/// Keeps the shared failure counters: at start, before the broker listens, the limiters load the keys that are not full
/// (so a restarted instance still refuses a limited client); then, once a minute, the buckets that are full again are
/// deleted from the registry (<see cref="ICredentialFailureStore.PurgeCredentialFailuresAsync"/>), so the table holds
/// only keys with failures to pay off. Any instance may sweep; sweeps of several instances delete the same rows.
/// </summary>
internal sealed partial class CredentialFailureSweeper(FailureRateLimiter devices, [FromKeyedServices(FailureRateLimiter.AdminKeys)] FailureRateLimiter adminKeys, ICredentialFailureStore store, TimeProvider timeProvider, ILogger<CredentialFailureSweeper> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await devices.LoadAsync(cancellationToken).ConfigureAwait(false);
            await adminKeys.LoadAsync(cancellationToken).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // a registry that cannot be read now must not keep the server from starting: the limits then start empty
        catch (Exception ex) when (ex is not OperationCanceledException)
#pragma warning restore CA1031
        {
            LogLoadFailed(logger, ex.Message);
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Interval, timeProvider, stoppingToken).ConfigureAwait(false);
                await store.PurgeCredentialFailuresAsync(timeProvider.GetUtcNow(), stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // the next sweep tries again; the host must not stop for one failed sweep
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogSweepFailed(logger, ex.Message);
            }
        }
    }

    [LoggerMessage(EventId = 1721, Level = LogLevel.Warning, Message = "The failed-credential counters could not be loaded from the registry; this instance starts with empty ones: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 1722, Level = LogLevel.Warning, Message = "Deleting full failed-credential counters failed; trying again in a minute: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, string reason);
}
