using Enroll.Protocol.Commands;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Commands;

/// <summary>
/// What the server does with commands (SPEC §2.6), for the HTTP API and the request handlers: store, deliver at once
/// where the device can be reached, record results and cancels, and announce every command that finished so waiters on
/// any instance wake (<see cref="CommandWaiters"/>).
/// </summary>
internal sealed partial class CommandService(
    ICommandStore commands,
    IDeviceStore devices,
    CommandDelivery delivery,
    CommandWaiters waiters,
    TimeProvider timeProvider,
    ILogger<CommandService> logger,
    Http.ConsoleApi.ConsoleFeed feed)
{
    /// <summary>
    /// Queues a command for <paramref name="deviceId"/> and, after the commit, publishes it at once when the device can be
    /// reached (<see cref="CommandDelivery.CanReachAsync"/>), marking it sent. A publish that fails leaves it queued: the
    /// device's next commands/pending delivers it. The limits are the caller's to check (<see cref="CommandLimits"/>),
    /// except the outstanding count, which the store checks.
    /// </summary>
    public async Task<SendCommandOutcome> SendAsync(string deviceId, string name, string? payload, TimeSpan ttl, string? rolloutId, CancellationToken cancellationToken)
    {
        var device = await devices.FindDeviceAsync(deviceId, cancellationToken).ConfigureAwait(false);
        if (device is null)
        {
            return new SendCommandOutcome(SendCommandResult.NoDevice);
        }

        if (device.Status == DeviceStatuses.Revoked)
        {
            return new SendCommandOutcome(SendCommandResult.Revoked);
        }

        var outcome = await commands.EnqueueCommandAsync(deviceId, name, payload, ttl, timeProvider.GetUtcNow(), rolloutId, cancellationToken).ConfigureAwait(false);
        if (outcome.Result != EnqueueCommandResult.Queued)
        {
            return new SendCommandOutcome(outcome.Result == EnqueueCommandResult.TooMany ? SendCommandResult.TooMany : SendCommandResult.NoDevice);
        }

        var command = outcome.Command!;
        LogQueued(logger, command.CommandId, deviceId, name);
        command = await DeliverAsync(command, device, cancellationToken).ConfigureAwait(false);
        await feed.AnnounceAsync(Http.ConsoleApi.ConsoleFeed.Commands, command.CommandId).ConfigureAwait(false);
        return new SendCommandOutcome(SendCommandResult.Queued, command);
    }

    /// <summary>
    /// Publishes a just-queued <paramref name="command"/> when its device can be reached and marks it sent; returns it as
    /// it now is. A publish that fails leaves it queued for the device's next commands/pending.
    /// </summary>
    public async Task<CommandRecord> DeliverAsync(CommandRecord command, DeviceRecord? device, CancellationToken cancellationToken)
    {
        try
        {
            device ??= await devices.FindDeviceAsync(command.DeviceId, cancellationToken).ConfigureAwait(false);
            if (device is null || !await delivery.CanReachAsync(device).ConfigureAwait(false))
            {
                return command;
            }

            await delivery.PublishAsync(command, cancellationToken).ConfigureAwait(false);
            var sentAt = timeProvider.GetUtcNow();
            return await commands.MarkCommandSentAsync(command.CommandId, sentAt, cancellationToken).ConfigureAwait(false)
                ? command with { State = Protocol.Messages.CommandStatuses.Sent, SentAt = sentAt }
                : await commands.GetCommandAsync(command.CommandId, cancellationToken).ConfigureAwait(false) ?? command;
        }
#pragma warning disable CA1031 // the command is stored: a failed publish leaves it queued for the device's next commands/pending
        catch (Exception ex) when (ex is not OperationCanceledException)
#pragma warning restore CA1031
        {
            LogPublishFailed(logger, command.CommandId, command.DeviceId, ex.Message);
            return command;
        }
    }

    /// <summary>Cancels a queued or sent command and announces it; a finished one keeps its state.</summary>
    public async Task<CommandChangeOutcome> CancelAsync(string commandId, CancellationToken cancellationToken)
    {
        var outcome = await commands.CancelCommandAsync(commandId, timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (outcome.Result == CommandResultOutcome.Changed)
        {
            LogCanceled(logger, commandId);
            await AnnounceAsync(commandId, cancellationToken).ConfigureAwait(false);
        }

        return outcome;
    }

    /// <summary>Records a device's result (see <see cref="ICommandStore.RecordCommandResultAsync"/>) and announces it when it finished the command.</summary>
    public async Task<CommandChangeOutcome> RecordResultAsync(string commandId, string deviceId, string status, string? payload, string? message, CancellationToken cancellationToken)
    {
        var outcome = await commands.RecordCommandResultAsync(commandId, deviceId, status, payload, message, timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (outcome.Result == CommandResultOutcome.Changed)
        {
            LogFinished(logger, commandId, deviceId, status);
            await AnnounceAsync(commandId, cancellationToken).ConfigureAwait(false);
        }

        return outcome;
    }

    /// <summary>Announces that <paramref name="commandId"/> finished; a feed that fails only delays waiters to their next re-read.</summary>
    public async Task AnnounceAsync(string commandId, CancellationToken cancellationToken)
    {
        try
        {
            await waiters.AnnounceFinishedAsync(commandId, cancellationToken).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // waiters re-read the store on their own; a lost announcement only makes them later
        catch (Exception ex) when (ex is not OperationCanceledException)
#pragma warning restore CA1031
        {
            LogAnnounceFailed(logger, commandId, ex.Message);
        }
    }

    [LoggerMessage(EventId = 1800, Level = LogLevel.Information, Message = "Command {CommandId} ({Name}) queued for device {DeviceId}")]
    private static partial void LogQueued(ILogger logger, string commandId, string deviceId, string name);

    [LoggerMessage(EventId = 1801, Level = LogLevel.Warning, Message = "Command {CommandId} for device {DeviceId} could not be published now; it stays queued for the device's next commands/pending: {Reason}")]
    private static partial void LogPublishFailed(ILogger logger, string commandId, string deviceId, string reason);

    [LoggerMessage(EventId = 1802, Level = LogLevel.Information, Message = "Command {CommandId} of device {DeviceId} finished: {State}")]
    private static partial void LogFinished(ILogger logger, string commandId, string deviceId, string state);

    [LoggerMessage(EventId = 1803, Level = LogLevel.Information, Message = "Command {CommandId} canceled")]
    private static partial void LogCanceled(ILogger logger, string commandId);

    [LoggerMessage(EventId = 1804, Level = LogLevel.Warning, Message = "That command {CommandId} finished could not be announced to other instances; their waiters see it on their next re-read: {Reason}")]
    private static partial void LogAnnounceFailed(ILogger logger, string commandId, string reason);
}

/// <summary>How sending a command ended.</summary>
internal enum SendCommandResult
{
    /// <summary>Stored (and sent when the device could be reached).</summary>
    Queued,

    /// <summary>The device has <see cref="CommandLimits.MaxOutstandingPerDevice"/> outstanding.</summary>
    TooMany,

    /// <summary>No such device.</summary>
    NoDevice,

    /// <summary>The device is revoked: it can never take a command.</summary>
    Revoked,
}

/// <summary>A send's outcome, with the command as stored.</summary>
internal sealed record SendCommandOutcome(SendCommandResult Result, CommandRecord? Command = null);
