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

    public Task<RegisterDeviceOutcome> RegisterDeviceAsync(RegisterDeviceCommand command, CancellationToken cancellationToken = default) =>
        TransactAsync((connection, transaction) => RegisterAsync(connection, transaction, command, cancellationToken), cancellationToken);

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
            if (existing.OrgId != command.OrgId)
            {
                // Another organisation's device: do not reveal that it exists.
                return (new RegisterDeviceOutcome(RegisterDeviceResult.NotFound, null), End.Rollback);
            }

            if (existing.ClientId != command.ClientId)
            {
                return (new RegisterDeviceOutcome(RegisterDeviceResult.OtherClient, existing), End.Rollback);
            }

            if (!existing.IsActive)
            {
                return (new RegisterDeviceOutcome(RegisterDeviceResult.Revoked, existing), End.Rollback);
            }

            if (token is not null && (token.DeviceId != existing.DeviceId || token.IssuedAt < existing.TokensValidAfter))
            {
                return (new RegisterDeviceOutcome(RegisterDeviceResult.Stale, existing), End.Rollback);
            }

            await ExecuteAsync(
                connection,
                transaction,
                """
                UPDATE devices SET device_name = COALESCE($1, device_name), metadata = COALESCE($2, metadata),
                    updated_at = $3, last_registered_at = $3
                WHERE device_id = $4
                """,
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
