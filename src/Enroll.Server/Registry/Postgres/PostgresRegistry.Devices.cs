using Npgsql;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private const string DeviceColumns = "device_id, org_id, client_id, device_name, metadata, status, provisioning_token_id, created_at, updated_at, last_registered_at, tokens_valid_after, revoked_at";

    public async Task<DeviceRecord?> FindDeviceAsync(string deviceId, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {DeviceColumns} FROM devices WHERE device_id = $1", ReadDevice, cancellationToken, deviceId).ConfigureAwait(false)).FirstOrDefault();

    public async Task<DeviceRecord?> FindDeviceByClientAsync(string orgId, string clientId, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {DeviceColumns} FROM devices WHERE org_id = $1 AND client_id = $2", ReadDevice, cancellationToken, orgId, clientId).ConfigureAwait(false)).FirstOrDefault();

    public async Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(string? orgId, int limit, string? afterDeviceId = null, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            // The cursor is the last Device ID of the previous page, in the page order (created_at, device_id).
            $"SELECT {DeviceColumns} FROM devices WHERE ($1::text IS NULL OR org_id = $1::text) AND ($2::text IS NULL OR (created_at, device_id) > (SELECT created_at, device_id FROM devices WHERE device_id = $2::text)) ORDER BY created_at, device_id LIMIT $3",
            ReadDevice,
            cancellationToken,
            orgId,
            afterDeviceId,
            limit).ConfigureAwait(false);

    public async Task<int> CountDevicesAsync(CancellationToken cancellationToken = default) =>
        (await ReadAsync("SELECT COUNT(*) FROM devices", r => (int)r.GetInt64(0), cancellationToken).ConfigureAwait(false)).Single();

    /// <summary>Concurrent registrations share transactions (group commit): see <see cref="RegisterBatchAsync"/>.</summary>
    public Task<RegisterDeviceOutcome> RegisterDeviceAsync(RegisterDeviceCommand command, CancellationToken cancellationToken = default) =>
        _registrations.RunAsync(command, cancellationToken);

    /// <summary>Registration batches so far: commits, registrations they carried, batches run again one command per transaction.</summary>
    public (long Batches, long Commands, long Fallbacks) RegistrationStatistics => _registrations.Statistics;

    /// <summary>Registrations waiting for the next batch now.</summary>
    public int QueuedRegistrations => _registrations.Queued;

    private PostgresWriteBatch<RegisterDeviceCommand, RegisterDeviceOutcome> NewRegistrationBatch() =>
        new(RegisterBatchAsync, RegisterAloneAsync, maxBatch: 128, capacity: 4096);

    /// <summary>One registration in its own transaction: the way back when its batch failed.</summary>
    private Task<RegisterDeviceOutcome> RegisterAloneAsync(RegisterDeviceCommand command, CancellationToken cancellationToken) =>
        TransactAsync((connection, transaction) => RegisterAsync(connection, transaction, command, cancellationToken), cancellationToken);

    /// <summary>
    /// Registers <paramref name="commands"/> in order in one transaction, with the outcomes <see cref="RegisterAsync"/> would
    /// give them one after the other, in three round trips: (1) every device the commands name or whose client they name,
    /// and every Provisioning Token they count a use of, read and locked (<c>FOR UPDATE</c>); (2) the checks, in memory,
    /// each command seeing what the earlier ones did; (3) the writes of the commands that write, pipelined in one
    /// <see cref="NpgsqlBatch"/>, then the commit. A new client's device is a plain <c>INSERT</c>: when a concurrent
    /// instance created that client's device since (1), the insert fails, the batch rolls back and its commands run again
    /// alone (<see cref="PostgresWriteBatch{TCommand, TResult}"/>), where the retry sees that device.
    /// </summary>
    private async Task<IReadOnlyList<RegisterDeviceOutcome>> RegisterBatchAsync(IReadOnlyList<RegisterDeviceCommand> commands)
    {
        await using var connection = await _dataSource.OpenConnectionAsync().ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.ReadCommitted).ConfigureAwait(false);
        var state = await LockBatchRowsAsync(connection, transaction, commands).ConfigureAwait(false);

        var outcomes = new RegisterDeviceOutcome[commands.Count];
        await using var writes = new NpgsqlBatch(connection, transaction);
        var uses = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < commands.Count; i++)
        {
            outcomes[i] = Decide(commands[i], state, writes, uses);
        }

        foreach (var (tokenId, count) in uses)
        {
            writes.BatchCommands.Add(BatchCommand("UPDATE provisioning_tokens SET uses = uses + $2 WHERE id = $1", tokenId, count));
        }

        if (writes.BatchCommands.Count == 0)
        {
            await transaction.RollbackAsync().ConfigureAwait(false);
            return outcomes;
        }

        await writes.ExecuteNonQueryAsync().ConfigureAwait(false);
        await transaction.CommitAsync().ConfigureAwait(false);
        return outcomes;
    }

    /// <summary>What a registration batch knows of the rows it locked, and what its earlier commands did to them.</summary>
    private sealed class BatchState
    {
        public Dictionary<string, DeviceRecord> ById { get; } = new(StringComparer.Ordinal);

        public Dictionary<(string OrgId, string ClientId), DeviceRecord> ByClient { get; } = [];

        /// <summary>Provisioning Token ID → (uses, max uses) as the batch's commands leave them.</summary>
        public Dictionary<string, (long Uses, long? MaxUses)> Tokens { get; } = new(StringComparer.Ordinal);

        public void Put(DeviceRecord device)
        {
            ById[device.DeviceId] = device;
            ByClient[(device.OrgId, device.ClientId)] = device;
        }
    }

    /// <summary>Round trip (1) of <see cref="RegisterBatchAsync"/>: the rows the commands may touch, locked until commit.</summary>
    private static async Task<BatchState> LockBatchRowsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, IReadOnlyList<RegisterDeviceCommand> commands)
    {
        await using var reads = new NpgsqlBatch(connection, transaction);
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var clients = new HashSet<(string, string)>();
        foreach (var command in commands)
        {
            if (command.DeviceId is { } id)
            {
                if (ids.Add(id))
                {
                    reads.BatchCommands.Add(BatchCommand($"SELECT {DeviceColumns} FROM devices WHERE device_id = $1 FOR UPDATE", id));
                }
            }
            else if (clients.Add((command.OrgId, command.ClientId)))
            {
                reads.BatchCommands.Add(BatchCommand($"SELECT {DeviceColumns} FROM devices WHERE org_id = $1 AND client_id = $2 FOR UPDATE", command.OrgId, command.ClientId));
            }
        }

        var tokenIds = commands.Select(c => c.ProvisioningTokenId).OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        if (tokenIds.Length > 0)
        {
            reads.BatchCommands.Add(BatchCommand("SELECT id, uses, max_uses FROM provisioning_tokens WHERE id = ANY($1) ORDER BY id FOR UPDATE", [tokenIds]));
        }

        var state = new BatchState();
        await using var reader = await reads.ExecuteReaderAsync().ConfigureAwait(false);
        for (var result = 0; result < reads.BatchCommands.Count; result++)
        {
            var tokens = tokenIds.Length > 0 && result == reads.BatchCommands.Count - 1;
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                if (tokens)
                {
                    state.Tokens[reader.GetString(0)] = (reader.GetInt64(1), reader.IsDBNull(2) ? null : reader.GetInt64(2));
                }
                else
                {
                    state.Put(ReadDevice(reader));
                }
            }

            await reader.NextResultAsync().ConfigureAwait(false);
        }

        return state;
    }

    /// <summary>Step (2) of <see cref="RegisterBatchAsync"/> for one command: the checks of <see cref="RegisterAsync"/> on the batch's state, its writes added to <paramref name="writes"/>.</summary>
    private static RegisterDeviceOutcome Decide(RegisterDeviceCommand command, BatchState state, NpgsqlBatch writes, Dictionary<string, int> uses)
    {
        DeviceRecord? existing;
        if (command.DeviceId is { } id)
        {
            if (!state.ById.TryGetValue(id, out existing))
            {
                return new RegisterDeviceOutcome(RegisterDeviceResult.NotFound, null);
            }
        }
        else
        {
            state.ByClient.TryGetValue((command.OrgId, command.ClientId), out existing);
        }

        var now = ToUnix(command.Now);
        var token = command.RegistrationToken;
        if (existing is not null)
        {
            if (command.RefusalFor(existing) is { } refused)
            {
                return refused;
            }

            writes.BatchCommands.Add(BatchCommand(UpdateRegisteredSql, command.Name, command.MetadataJson, now, existing.DeviceId));
            AddIssued(writes, token);
            var updated = existing with
            {
                Name = command.Name ?? existing.Name,
                MetadataJson = command.MetadataJson ?? existing.MetadataJson,
                UpdatedAt = command.Now,
                LastRegisteredAt = command.Now,
            };
            state.Put(updated);
            return new RegisterDeviceOutcome(RegisterDeviceResult.Updated, updated);
        }

        if (token is not null && token.DeviceId != command.NewDeviceId)
        {
            return new RegisterDeviceOutcome(RegisterDeviceResult.Stale, null);
        }

        if (command.ProvisioningTokenId is { } tokenId)
        {
            if (!state.Tokens.TryGetValue(tokenId, out var counter) || counter.Uses >= counter.MaxUses)
            {
                return new RegisterDeviceOutcome(RegisterDeviceResult.TokenUsedUp, null);
            }

            state.Tokens[tokenId] = (counter.Uses + 1, counter.MaxUses);
            uses[tokenId] = uses.GetValueOrDefault(tokenId) + 1;
        }

        writes.BatchCommands.Add(BatchCommand(
            $"INSERT INTO devices ({DeviceColumns}) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7, $7, NULL, NULL)",
            command.NewDeviceId,
            command.OrgId,
            command.ClientId,
            command.Name,
            command.MetadataJson,
            command.ProvisioningTokenId,
            now));
        AddIssued(writes, token);
        var created = command.NewDevice();
        state.Put(created);
        return new RegisterDeviceOutcome(RegisterDeviceResult.Created, created);
    }

    private static void AddIssued(NpgsqlBatch writes, RegistrationTokenRecord? token)
    {
        if (token is not null)
        {
            writes.BatchCommands.Add(BatchCommand(InsertRegistrationTokenSql, token.TokenId, token.DeviceId, ToUnix(token.IssuedAt), ToUnix(token.ExpiresAt)));
        }
    }

    /// <summary>A re-registration's update: $1 name, $2 metadata (each kept when null), $3 now, $4 Device ID.</summary>
    private const string UpdateRegisteredSql =
        """
        UPDATE devices SET device_name = COALESCE($1, device_name), metadata = COALESCE($2, metadata),
            updated_at = $3, last_registered_at = $3
        WHERE device_id = $4
        """;

    private static async Task<(RegisterDeviceOutcome, End)> RegisterAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, RegisterDeviceCommand command, CancellationToken cancellationToken)
    {
        // The device row stays locked until commit, so a concurrent revocation or registration of it waits for this one.
        var existing = command.DeviceId is { } id
            ? await QueryOneAsync(connection, transaction, $"SELECT {DeviceColumns} FROM devices WHERE device_id = $1 FOR UPDATE", ReadDevice, cancellationToken, id).ConfigureAwait(false)
            : await QueryOneAsync(connection, transaction, $"SELECT {DeviceColumns} FROM devices WHERE org_id = $1 AND client_id = $2 FOR UPDATE", ReadDevice, cancellationToken, command.OrgId, command.ClientId).ConfigureAwait(false);

        if (existing is null && command.DeviceId is not null)
        {
            return (new RegisterDeviceOutcome(RegisterDeviceResult.NotFound, null), End.Rollback);
        }

        var now = ToUnix(command.Now);
        var token = command.RegistrationToken;
        if (existing is not null)
        {
            if (command.RefusalFor(existing) is { } refused)
            {
                return (refused, End.Rollback);
            }

            await ExecuteAsync(
                connection,
                transaction,
                UpdateRegisteredSql,
                cancellationToken,
                command.Name,
                command.MetadataJson,
                now,
                existing.DeviceId).ConfigureAwait(false);
            await RecordIssuedAsync(connection, transaction, token, cancellationToken).ConfigureAwait(false);
            return (new RegisterDeviceOutcome(RegisterDeviceResult.Updated, existing with
            {
                Name = command.Name ?? existing.Name,
                MetadataJson = command.MetadataJson ?? existing.MetadataJson,
                UpdatedAt = command.Now,
                LastRegisteredAt = command.Now,
            }), End.Commit);
        }

        if (token is not null && token.DeviceId != command.NewDeviceId)
        {
            // Signed for a device that is no longer there to register (none is: the caller decides again).
            return (new RegisterDeviceOutcome(RegisterDeviceResult.Stale, null), End.Rollback);
        }

        // The unique index on (org_id, client_id) decides between concurrent first registrations of one client: the
        // loser's insert waits for the winner's commit, inserts nothing, and the retry finds the winner's device.
        var inserted = await ExecuteAsync(
            connection,
            transaction,
            $"""
            INSERT INTO devices ({DeviceColumns})
            VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7, $7, NULL, NULL)
            ON CONFLICT DO NOTHING
            """,
            cancellationToken,
            command.NewDeviceId,
            command.OrgId,
            command.ClientId,
            command.Name,
            command.MetadataJson,
            command.ProvisioningTokenId,
            now).ConfigureAwait(false);
        if (inserted == 0)
        {
            return (new RegisterDeviceOutcome(RegisterDeviceResult.Stale, null), End.Retry);
        }

        if (command.ProvisioningTokenId is { } tokenId && !await CountUseAsync(connection, transaction, tokenId, cancellationToken).ConfigureAwait(false))
        {
            return (new RegisterDeviceOutcome(RegisterDeviceResult.TokenUsedUp, null), End.Rollback);
        }

        await RecordIssuedAsync(connection, transaction, token, cancellationToken).ConfigureAwait(false);
        return (new RegisterDeviceOutcome(RegisterDeviceResult.Created, command.NewDevice()), End.Commit);
    }

    /// <summary>A statement of an <see cref="NpgsqlBatch"/>, with positional parameters as <see cref="Command"/> has them.</summary>
    private static NpgsqlBatchCommand BatchCommand(string sql, params object?[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value ?? DBNull.Value });
        }

        return command;
    }

    private static async Task RecordIssuedAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, RegistrationTokenRecord? token, CancellationToken cancellationToken)
    {
        if (token is not null)
        {
            await InsertRegistrationTokenAsync(connection, transaction, token, cancellationToken).ConfigureAwait(false);
        }
    }

    public async Task<DeviceRecord?> RevokeDeviceAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        (await ReadAsync(
            $"UPDATE devices SET status = 'revoked', revoked_at = COALESCE(revoked_at, $2), tokens_valid_after = $3, updated_at = $2 WHERE device_id = $1 RETURNING {DeviceColumns}",
            ReadDevice,
            cancellationToken,
            deviceId,
            ToUnix(at),
            TokensValidAfter(at)).ConfigureAwait(false)).FirstOrDefault();

    public Task RevokeDeviceTokensAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        WriteAsync(RevokeTokensSql, cancellationToken, deviceId, ToUnix(at), TokensValidAfter(at));

    /// <summary>Moves the device's revocation boundary forward (never back): $1 Device ID, $2 now, $3 the boundary.</summary>
    private const string RevokeTokensSql =
        "UPDATE devices SET tokens_valid_after = GREATEST(COALESCE(tokens_valid_after, 0), $3), updated_at = $2 WHERE device_id = $1";

    /// <summary><see cref="IDeviceStore.TokensValidAfter"/> in the table's unit (Unix milliseconds).</summary>
    private static long TokensValidAfter(DateTimeOffset at) => ToUnix(IDeviceStore.TokensValidAfter(at));
}
