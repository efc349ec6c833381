using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Http.Operators;

/// <summary>Deletes expired and idle console sessions once an hour, so the table holds only live ones.</summary>
internal sealed partial class SessionSweeper(IOperatorStore store, TimeProvider timeProvider, ILogger<SessionSweeper> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromHours(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, timeProvider);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                var now = timeProvider.GetUtcNow();
                await store.PruneSessionsAsync(now, now - OperatorAuth.IdleTimeout, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogPruneFailed(logger, ex);
            }
        }
    }

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning, Message = "Console sessions: deleting expired ones failed; trying again in an hour")]
    private static partial void LogPruneFailed(ILogger logger, Exception exception);
}
