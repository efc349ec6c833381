using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    public Task<RolloutRecord> CreateRolloutAsync(RolloutRecord rollout, IReadOnlyDictionary<string, string> filter, CancellationToken cancellationToken = default)
    {
        var (where, values) = RolloutFilter.Postgres(filter, 3);
        return TransactAsync(
            async (connection, transaction) =>
            {
                var total = await ExecuteAsync(
                    connection,
                    transaction,
                    "INSERT INTO command_rollout_targets (rollout_id, device_id, state) SELECT $1, d.device_id, 'waiting'"
                    + " FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id WHERE d.org_id = $2 AND d.status = 'active'" + where,
                    cancellationToken,
                    [rollout.RolloutId, rollout.OrgId, .. values]).ConfigureAwait(false);
                var stored = rollout with { Total = total };
                await ExecuteAsync(
                    connection,
                    transaction,
                    "INSERT INTO command_rollouts (" + RolloutRecord.Columns + ", next_at) VALUES ($1, $2, $3, $4, $5::text, $6, $7, $8, $9, $8)",
                    cancellationToken,
                    stored.RolloutId,
                    stored.OrgId,
                    stored.Filter,
                    stored.Name,
                    stored.Payload,
                    (long)stored.Ttl.TotalMilliseconds,
                    (long)stored.RatePerMinute,
                    ToUnix(stored.CreatedAt),
                    (long)total).ConfigureAwait(false);
                return (stored, End.Commit);
            },
            cancellationToken);
    }

    public async Task<IReadOnlyList<CommandRecord>> AdvanceRolloutsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        // The advancer asks every second: a plain read answers "nothing due" without a transaction.
        (await ReadAsync(
            "SELECT 1 FROM command_rollouts r WHERE next_at <= $1 AND EXISTS (SELECT 1 FROM command_rollout_targets g WHERE g.rollout_id = r.rollout_id AND g.state = 'waiting') LIMIT 1",
            r => r.GetInt32(0),
            cancellationToken,
            ToUnix(now)).ConfigureAwait(false)).Count == 0
            ? []
            : await AdvanceDueRolloutsAsync(now, cancellationToken).ConfigureAwait(false);

    private Task<IReadOnlyList<CommandRecord>> AdvanceDueRolloutsAsync(DateTimeOffset now, CancellationToken cancellationToken) =>
        TransactAsync<IReadOnlyList<CommandRecord>>(
            async (connection, transaction) =>
            {
                // A rollout another instance is advancing right now is skipped, not waited for: each target is taken once.
                var due = await QueryAsync(
                    connection,
                    transaction,
                    "SELECT " + RolloutRecord.Columns + ", next_at FROM command_rollouts r WHERE next_at <= $1"
                    + " AND EXISTS (SELECT 1 FROM command_rollout_targets g WHERE g.rollout_id = r.rollout_id AND g.state = 'waiting')"
                    + " FOR UPDATE SKIP LOCKED",
                    r => (Rollout: RolloutRecord.Read(r), NextAt: FromUnix(r.GetInt64(9))),
                    cancellationToken,
                    ToUnix(now)).ConfigureAwait(false);
                var queued = new List<CommandRecord>();
                foreach (var (rollout, nextAt) in due)
                {
                    var (count, next) = rollout.Due(nextAt, now);
                    var devices = await QueryAsync(
                        connection,
                        transaction,
                        "SELECT device_id FROM command_rollout_targets WHERE rollout_id = $1 AND state = 'waiting' ORDER BY device_id LIMIT $2",
                        r => r.GetString(0),
                        cancellationToken,
                        rollout.RolloutId,
                        (long)count).ConfigureAwait(false);
                    foreach (var device in devices)
                    {
                        var outcome = await EnqueueInAsync(connection, transaction, device, rollout.Name, rollout.Payload, rollout.Ttl, now, rollout.RolloutId, null, cancellationToken).ConfigureAwait(false);
                        await ExecuteAsync(
                            connection,
                            transaction,
                            "UPDATE command_rollout_targets SET state = $3, command_id = $4::text WHERE rollout_id = $1 AND device_id = $2",
                            cancellationToken,
                            rollout.RolloutId,
                            device,
                            outcome.Command is null ? RolloutRecord.Refused : RolloutRecord.Queued,
                            outcome.Command?.CommandId).ConfigureAwait(false);
                        if (outcome.Command is { } command)
                        {
                            queued.Add(command);
                        }
                    }

                    await ExecuteAsync(connection, transaction, "UPDATE command_rollouts SET next_at = $2 WHERE rollout_id = $1", cancellationToken, rollout.RolloutId, ToUnix(next)).ConfigureAwait(false);
                }

                return (queued, End.Commit);
            },
            cancellationToken);

    public async Task<RolloutProgress?> GetRolloutAsync(string rolloutId, CancellationToken cancellationToken = default)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        if (await QueryOneAsync(connection, null, "SELECT " + RolloutRecord.Columns + " FROM command_rollouts WHERE rollout_id = $1", RolloutRecord.Read, cancellationToken, rolloutId).ConfigureAwait(false) is not { } rollout)
        {
            return null;
        }

        var targets = (await QueryAsync(connection, null, "SELECT state, COUNT(*) FROM command_rollout_targets WHERE rollout_id = $1 GROUP BY state", r => (State: r.GetString(0), Count: (int)r.GetInt64(1)), cancellationToken, rolloutId).ConfigureAwait(false))
            .ToDictionary(p => p.State, p => p.Count, StringComparer.Ordinal);
        var commands = (await QueryAsync(connection, null, "SELECT state, COUNT(*) FROM commands WHERE rollout_id = $1 GROUP BY state", r => (State: r.GetString(0), Count: (int)r.GetInt64(1)), cancellationToken, rolloutId).ConfigureAwait(false))
            .ToDictionary(p => p.State, p => p.Count, StringComparer.Ordinal);
        return new RolloutProgress(rollout, targets.GetValueOrDefault(RolloutRecord.Waiting), targets.GetValueOrDefault(RolloutRecord.Refused), commands);
    }
}
