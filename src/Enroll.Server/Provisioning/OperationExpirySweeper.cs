using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Provisioning;

/// <summary>Marks pending operations past their expiry as expired, once a minute.</summary>
internal sealed class OperationExpirySweeper(IRegistry registry, TimeProvider timeProvider, ILogger<OperationExpirySweeper> logger) : BackgroundService
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
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
        }
    }
}
