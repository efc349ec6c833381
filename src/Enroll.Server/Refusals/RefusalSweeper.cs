using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Refusals;

/// <summary>Once an hour, deletes the refusal log's rows older than <see cref="EnrollServerOptions.RefusalRetention"/>.</summary>
internal sealed partial class RefusalSweeper(IRefusalStore store, IOptions<EnrollServerOptions> options, TimeProvider timeProvider, ILogger<RefusalSweeper> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromHours(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, timeProvider);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            await SweepAsync(stoppingToken).ConfigureAwait(false);
        }
    }

    /// <summary>One sweep; a failure is logged and the next hour tries again.</summary>
    internal async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        try
        {
            var deleted = await store.PurgeRefusalsAsync(timeProvider.GetUtcNow() - options.Value.RefusalRetention, cancellationToken).ConfigureAwait(false);
            LogSwept(logger, deleted, options.Value.RefusalRetention);
            return deleted;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogSweepFailed(logger, ex);
            return 0;
        }
    }

    [LoggerMessage(EventId = 2102, Level = LogLevel.Debug, Message = "Refusal log: {Deleted} row(s) older than {Retention} deleted")]
    private static partial void LogSwept(ILogger logger, int deleted, TimeSpan retention);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Warning, Message = "Refusal log: deleting old rows failed; trying again in an hour")]
    private static partial void LogSweepFailed(ILogger logger, Exception exception);
}
