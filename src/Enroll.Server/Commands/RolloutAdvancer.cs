using Enroll.Server.Registry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Commands;

/// <summary>
/// Moves fleet commands along (<see cref="ICommandRolloutStore.AdvanceRolloutsAsync"/>): every <see cref="Interval"/>
/// the store queues each due rollout's next devices at its rate, and the commands are delivered at once where the device
/// can be reached (else on its next commands/pending). Any instance may advance: the store takes each target once. A
/// failed advance is logged and retried after a doubling, jittered wait up to <see cref="MaxBackoff"/>; the loop ends
/// only with the host.
/// </summary>
internal sealed partial class RolloutAdvancer(ICommandRolloutStore store, CommandService commands, TimeProvider timeProvider, ILogger<RolloutAdvancer> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan MaxBackoff = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(failures == 0 ? Interval : Backoff.After(failures, Interval, MaxBackoff), timeProvider, stoppingToken).ConfigureAwait(false);
                await AdvanceAsync(stoppingToken).ConfigureAwait(false);
                failures = 0;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // the next advance tries again; the host must not stop for one failure
            catch (Exception ex)
#pragma warning restore CA1031
            {
                failures++;
                LogAdvanceFailed(logger, failures, ex.Message);
            }
        }
    }

    /// <summary>One advance: queues what is due and delivers it; returns how many commands were queued.</summary>
    public async Task<int> AdvanceAsync(CancellationToken cancellationToken)
    {
        var queued = await store.AdvanceRolloutsAsync(timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        foreach (var command in queued)
        {
            await commands.DeliverAsync(command, null, cancellationToken).ConfigureAwait(false);
        }

        if (queued.Count > 0)
        {
            LogAdvanced(logger, queued.Count, queued[0].RolloutId ?? string.Empty);
        }

        return queued.Count;
    }

    [LoggerMessage(EventId = 1807, Level = LogLevel.Debug, Message = "Queued {Count} commands of rollouts (first: {RolloutId})")]
    private static partial void LogAdvanced(ILogger logger, int count, string rolloutId);

    [LoggerMessage(EventId = 1808, Level = LogLevel.Warning, Message = "Advancing fleet commands failed ({Failures} in a row); trying again soon: {Reason}")]
    private static partial void LogAdvanceFailed(ILogger logger, int failures, string reason);
}
