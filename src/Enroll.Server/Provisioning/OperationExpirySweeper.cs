using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Provisioning;

/// <summary>Marks pending operations past their expiry as expired, once a minute.</summary>
internal sealed partial class OperationExpirySweeper(IOperationStore registry, TimeProvider timeProvider, RegistryDiskFull diskFull, ILogger<OperationExpirySweeper> logger, Http.ConsoleApi.ConsoleFeed feed) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Interval, timeProvider, stoppingToken).ConfigureAwait(false);
                var expired = await registry.ExpireOperationsAsync(timeProvider.GetUtcNow(), stoppingToken).ConfigureAwait(false);
                if (expired > 0)
                {
                    Log.OperationsExpired(logger, expired);
                    await feed.AnnounceAsync(Http.ConsoleApi.ConsoleFeed.Operations, null).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (DiskFull.Is(ex))
            {
                // An exception out of a BackgroundService stops the whole host: a full disk must only skip this sweep.
                diskFull.Refused("operation expiry", ex);
            }
#pragma warning disable CA1031 // the next sweep tries again; the host must not stop for one failed sweep
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogSweepFailed(logger, ex.Message);
            }
        }
    }

    [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "Expiring pending provisioning operations failed; trying again in a minute: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, string reason);
}
