using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private const string CommandSelect = "SELECT " + CommandRecord.Columns + " FROM commands";

    public Task<EnqueueCommandOutcome> EnqueueCommandAsync(string deviceId, string name, string? payload, TimeSpan ttl, DateTimeOffset at, string? rolloutId = null, DateTimeOffset? sentAt = null, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                var outcome = await EnqueueInAsync(connection, transaction, deviceId, name, payload, ttl, at, rolloutId, sentAt, cancellationToken).ConfigureAwait(false);
                return (outcome, outcome.Result == EnqueueCommandResult.Queued ? End.Commit : End.Rollback);
            },
            cancellationToken);

    public async Task<bool> ReturnCommandToQueueAsync(string commandId, CancellationToken cancellationToken = default) =>
        await WriteAsync("UPDATE commands SET state = 'queued', sent_at = NULL WHERE command_id = $1 AND state = 'sent'", cancellationToken, commandId).ConfigureAwait(false) == 1;

    private static async Task<EnqueueCommandOutcome> EnqueueInAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction transaction, string deviceId, string name, string? payload, TimeSpan ttl, DateTimeOffset at, string? rolloutId, DateTimeOffset? sentAt, CancellationToken cancellationToken)
    {
        // The device row is locked until the commit: concurrent enqueues to one device count one after another.
        var device = await QueryOneAsync(connection, transaction, "SELECT device_id FROM devices WHERE device_id = $1 FOR UPDATE", r => r.GetString(0), cancellationToken, deviceId).ConfigureAwait(false);
        if (device is null)
        {
            return new EnqueueCommandOutcome(EnqueueCommandResult.NoDevice);
        }

        var outstanding = (await QueryAsync(
            connection,
            transaction,
            "SELECT COUNT(*) FROM commands WHERE device_id = $1 AND state IN ('queued', 'sent')",
            r => r.GetInt64(0),
            cancellationToken,
            deviceId).ConfigureAwait(false))[0];
        if (outstanding >= CommandLimits.MaxOutstandingPerDevice)
        {
            return new EnqueueCommandOutcome(EnqueueCommandResult.TooMany);
        }

        var command = new CommandRecord(CommandRecord.NewId(), deviceId, name, payload, sentAt is null ? CommandStatuses.Queued : CommandStatuses.Sent, at, at + ttl, SentAt: sentAt, RolloutId: rolloutId);
        await ExecuteAsync(
            connection,
            transaction,
            "INSERT INTO commands (command_id, device_id, name, payload, state, created_at, expires_at, rollout_id, sent_at) VALUES ($1, $2, $3, $4::text, $5, $6, $7, $8::text, $9::bigint)",
            cancellationToken,
            command.CommandId,
            deviceId,
            name,
            payload,
            command.State,
            ToUnix(at),
            ToUnix(command.ExpiresAt),
            rolloutId,
            sentAt is { } sent ? ToUnix(sent) : null).ConfigureAwait(false);
        return new EnqueueCommandOutcome(EnqueueCommandResult.Queued, command);
    }

    public Task<IReadOnlyList<CommandRecord>> TakeDeliverableCommandsAsync(string deviceId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        TransactAsync<IReadOnlyList<CommandRecord>>(
            async (connection, transaction) =>
            {
                var deliverable = await QueryAsync(
                    connection,
                    transaction,
                    CommandSelect + " WHERE device_id = $1 AND state IN ('queued', 'sent') AND expires_at > $2 ORDER BY seq FOR UPDATE",
                    CommandRecord.Read,
                    cancellationToken,
                    deviceId,
                    ToUnix(now)).ConfigureAwait(false);
                await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE commands SET state = 'sent', sent_at = $2 WHERE device_id = $1 AND state = 'queued' AND expires_at > $2",
                    cancellationToken,
                    deviceId,
                    ToUnix(now)).ConfigureAwait(false);
                return ([.. deliverable.Select(c => c.State == CommandStatuses.Queued ? c with { State = CommandStatuses.Sent, SentAt = now } : c)], End.Commit);
            },
            cancellationToken);

    public async Task<bool> MarkCommandSentAsync(string commandId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        await WriteAsync("UPDATE commands SET state = 'sent', sent_at = $2 WHERE command_id = $1 AND state = 'queued'", cancellationToken, commandId, ToUnix(at)).ConfigureAwait(false) == 1;

    public Task<CommandChangeOutcome> RecordCommandResultAsync(string commandId, string deviceId, string status, string? payload, string? message, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                if (await LockCommandAsync(connection, transaction, commandId, cancellationToken).ConfigureAwait(false) is not { } command)
                {
                    return (CommandChangeOutcome.NotFound, End.Rollback);
                }

                if (command.DeviceId != deviceId)
                {
                    return (CommandChangeOutcome.WrongDevice, End.Rollback);
                }

                if (command.IsFinal)
                {
                    return (new CommandChangeOutcome(CommandResultOutcome.AlreadyFinished, command), End.Rollback);
                }

                await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE commands SET state = $2, finished_at = $3, result_payload = $4::text, result_message = $5::text WHERE command_id = $1",
                    cancellationToken,
                    commandId,
                    status,
                    ToUnix(at),
                    payload,
                    message).ConfigureAwait(false);
                return (new CommandChangeOutcome(CommandResultOutcome.Changed, command with { State = status, FinishedAt = at, ResultPayload = payload, ResultMessage = message }), End.Commit);
            },
            cancellationToken);

    public Task<CommandChangeOutcome> CancelCommandAsync(string commandId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                if (await LockCommandAsync(connection, transaction, commandId, cancellationToken).ConfigureAwait(false) is not { } command)
                {
                    return (CommandChangeOutcome.NotFound, End.Rollback);
                }

                if (command.IsFinal)
                {
                    return (new CommandChangeOutcome(CommandResultOutcome.AlreadyFinished, command), End.Rollback);
                }

                await ExecuteAsync(connection, transaction, "UPDATE commands SET state = 'canceled', finished_at = $2 WHERE command_id = $1", cancellationToken, commandId, ToUnix(at)).ConfigureAwait(false);
                return (new CommandChangeOutcome(CommandResultOutcome.Changed, command with { State = CommandStatuses.Canceled, FinishedAt = at }), End.Commit);
            },
            cancellationToken);

    public async Task<IReadOnlyList<CommandRecord>> ExpireDueCommandsAsync(DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        // SKIP LOCKED: a command another instance is expiring (or a device is answering) right now is left to that one.
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await QueryAsync(
            connection,
            null,
            """
            UPDATE commands SET state = 'expired', finished_at = $1
            WHERE seq IN (SELECT seq FROM commands WHERE state IN ('queued', 'sent') AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING
            """ + " " + CommandRecord.Columns,
            CommandRecord.Read,
            cancellationToken,
            ToUnix(now),
            (long)CommandRecord.ExpiryBatch).ConfigureAwait(false);
    }

    public async Task<CommandRecord?> GetCommandAsync(string commandId, CancellationToken cancellationToken = default) =>
        (await ReadAsync(CommandSelect + " WHERE command_id = $1", CommandRecord.Read, cancellationToken, commandId).ConfigureAwait(false)).FirstOrDefault();

    public async Task<IReadOnlyList<CommandRecord>> ListCommandsAsync(string? deviceId, string? state, int limit, string? afterCommandId = null, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            CommandSelect
            + " WHERE ($1::text IS NULL OR device_id = $1) AND ($2::text IS NULL OR state = $2)"
            + " AND seq > COALESCE((SELECT seq FROM commands WHERE command_id = $3::text), 0) ORDER BY seq LIMIT $4",
            CommandRecord.Read,
            cancellationToken,
            deviceId,
            state,
            afterCommandId,
            (long)limit).ConfigureAwait(false);

    private static Task<CommandRecord?> LockCommandAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction transaction, string commandId, CancellationToken cancellationToken) =>
        QueryOneAsync(connection, transaction, CommandSelect + " WHERE command_id = $1 FOR UPDATE", CommandRecord.Read, cancellationToken, commandId);
}
