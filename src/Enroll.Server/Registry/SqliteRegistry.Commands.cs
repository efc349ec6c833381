using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using Enroll.Shared.Storage;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string CommandSelect = "SELECT " + CommandRecord.Columns + " FROM commands";

    public Task<EnqueueCommandOutcome> EnqueueCommandAsync(string deviceId, string name, string? payload, TimeSpan ttl, DateTimeOffset at, string? rolloutId = null, DateTimeOffset? sentAt = null, CancellationToken cancellationToken = default) =>
        // The one writer serialises enqueues: the count and the insert see no other write in between.
        _database.WriteAsync(context => EnqueueIn(context, deviceId, name, payload, ttl, at, rolloutId, sentAt), cancellationToken);

    public Task<bool> ReturnCommandToQueueAsync(string commandId, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute("UPDATE commands SET state = 'queued', sent_at = NULL WHERE command_id = $id AND state = 'sent'", ("$id", commandId)) == 1,
            cancellationToken);

    private static EnqueueCommandOutcome EnqueueIn(SqliteWriteContext context, string deviceId, string name, string? payload, TimeSpan ttl, DateTimeOffset at, string? rolloutId, DateTimeOffset? sentAt = null)
    {
        if (context.Command("SELECT 1 FROM devices WHERE device_id = $id", ("$id", deviceId)).ExecuteScalar() is null)
        {
            return new EnqueueCommandOutcome(EnqueueCommandResult.NoDevice);
        }

        var outstanding = (long)context.Command(
            "SELECT COUNT(*) FROM commands WHERE device_id = $id AND state IN ('queued', 'sent')",
            ("$id", deviceId)).ExecuteScalar()!;
        if (outstanding >= CommandLimits.MaxOutstandingPerDevice)
        {
            return new EnqueueCommandOutcome(EnqueueCommandResult.TooMany);
        }

        var command = new CommandRecord(CommandRecord.NewId(), deviceId, name, payload, sentAt is null ? CommandStatuses.Queued : CommandStatuses.Sent, at, at + ttl, SentAt: sentAt, RolloutId: rolloutId);
        context.Execute(
            "INSERT INTO commands (command_id, device_id, name, payload, state, created_at, expires_at, sent_at, rollout_id) VALUES ($id, $device, $name, $payload, $state, $at, $expires, $sent, $rollout)",
            ("$id", command.CommandId),
            ("$device", deviceId),
            ("$name", name),
            ("$payload", payload),
            ("$state", command.State),
            ("$at", ToUnix(at)),
            ("$expires", ToUnix(command.ExpiresAt)),
            ("$sent", sentAt is { } sent ? ToUnix(sent) : null),
            ("$rollout", rolloutId));
        return new EnqueueCommandOutcome(EnqueueCommandResult.Queued, command);
    }

    public Task<IReadOnlyList<CommandRecord>> TakeDeliverableCommandsAsync(string deviceId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        _database.WriteAsync<IReadOnlyList<CommandRecord>>(
            context =>
            {
                var deliverable = QueryAll(
                    context,
                    CommandSelect + " WHERE device_id = $id AND state IN ('queued', 'sent') AND expires_at > $now ORDER BY seq",
                    ("$id", deviceId),
                    ("$now", ToUnix(now)));
                context.Execute(
                    "UPDATE commands SET state = 'sent', sent_at = $now WHERE device_id = $id AND state = 'queued' AND expires_at > $now",
                    ("$id", deviceId),
                    ("$now", ToUnix(now)));
                return [.. deliverable.Select(c => c.State == CommandStatuses.Queued ? c with { State = CommandStatuses.Sent, SentAt = now } : c)];
            },
            cancellationToken);

    public Task<bool> MarkCommandSentAsync(string commandId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                "UPDATE commands SET state = 'sent', sent_at = $at WHERE command_id = $id AND state = 'queued'",
                ("$id", commandId),
                ("$at", ToUnix(at))) == 1,
            cancellationToken);

    public Task<CommandChangeOutcome> RecordCommandResultAsync(string commandId, string deviceId, string status, string? payload, string? message, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                if (QueryOne(context, CommandSelect + " WHERE command_id = $id", CommandRecord.Read, ("$id", commandId)) is not { } command)
                {
                    return CommandChangeOutcome.NotFound;
                }

                if (command.DeviceId != deviceId)
                {
                    return CommandChangeOutcome.WrongDevice;
                }

                if (command.IsFinal)
                {
                    return new CommandChangeOutcome(CommandResultOutcome.AlreadyFinished, command);
                }

                context.Execute(
                    "UPDATE commands SET state = $state, finished_at = $at, result_payload = $payload, result_message = $message WHERE command_id = $id",
                    ("$id", commandId),
                    ("$state", status),
                    ("$at", ToUnix(at)),
                    ("$payload", payload),
                    ("$message", message));
                return new CommandChangeOutcome(CommandResultOutcome.Changed, command with { State = status, FinishedAt = at, ResultPayload = payload, ResultMessage = message });
            },
            cancellationToken);

    public Task<CommandChangeOutcome> CancelCommandAsync(string commandId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                if (QueryOne(context, CommandSelect + " WHERE command_id = $id", CommandRecord.Read, ("$id", commandId)) is not { } command)
                {
                    return CommandChangeOutcome.NotFound;
                }

                if (command.IsFinal)
                {
                    return new CommandChangeOutcome(CommandResultOutcome.AlreadyFinished, command);
                }

                context.Execute(
                    "UPDATE commands SET state = 'canceled', finished_at = $at WHERE command_id = $id",
                    ("$id", commandId),
                    ("$at", ToUnix(at)));
                return new CommandChangeOutcome(CommandResultOutcome.Changed, command with { State = CommandStatuses.Canceled, FinishedAt = at });
            },
            cancellationToken);

    public Task<IReadOnlyList<CommandRecord>> ExpireDueCommandsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        _database.WriteAsync<IReadOnlyList<CommandRecord>>(
            context =>
            {
                var due = QueryAll(
                    context,
                    CommandSelect + " WHERE state IN ('queued', 'sent') AND expires_at <= $now ORDER BY expires_at LIMIT $batch",
                    ("$now", ToUnix(now)),
                    ("$batch", CommandRecord.ExpiryBatch));
                foreach (var command in due)
                {
                    context.Execute(
                        "UPDATE commands SET state = 'expired', finished_at = $now WHERE command_id = $id",
                        ("$id", command.CommandId),
                        ("$now", ToUnix(now)));
                }

                return [.. due.Select(c => c with { State = CommandStatuses.Expired, FinishedAt = now })];
            },
            isolated: false,
            cancellationToken);

    public Task<CommandRecord?> GetCommandAsync(string commandId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(CommandSelect + " WHERE command_id = $id", CommandRecord.Read, ("$id", commandId)).FirstOrDefault());

    public Task<IReadOnlyList<CommandRecord>> ListCommandsAsync(string? deviceId, string? state, int limit, string? afterCommandId = null, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<CommandRecord>>(Query(
            CommandSelect
            + " WHERE ($device IS NULL OR device_id = $device) AND ($state IS NULL OR state = $state)"
            + " AND seq > COALESCE((SELECT seq FROM commands WHERE command_id = $after), 0) ORDER BY seq LIMIT $limit",
            CommandRecord.Read,
            ("$device", deviceId),
            ("$state", state),
            ("$after", afterCommandId),
            ("$limit", limit)));

    private static List<CommandRecord> QueryAll(SqliteWriteContext context, string sql, params (string Name, object? Value)[] parameters)
    {
        using var reader = context.Command(sql, parameters).ExecuteReader();
        var results = new List<CommandRecord>();
        while (reader.Read())
        {
            results.Add(CommandRecord.Read(reader));
        }

        return results;
    }
}
