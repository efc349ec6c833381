using Enroll.Shared.Storage;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string DeviceColumns = "device_id, org_id, client_id, device_name, metadata, status, provisioning_token_id, created_at, updated_at, last_registered_at, tokens_valid_after, revoked_at";

    public Task<DeviceRecord?> FindDeviceAsync(string deviceId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query($"SELECT {DeviceColumns} FROM devices WHERE device_id = $id", ReadDevice, ("$id", deviceId)).FirstOrDefault());

    public Task<DeviceRecord?> FindDeviceByClientAsync(string orgId, string clientId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query($"SELECT {DeviceColumns} FROM devices WHERE org_id = $org AND client_id = $client", ReadDevice, ("$org", orgId), ("$client", clientId)).FirstOrDefault());

    public Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(string? orgId, int limit, string? afterDeviceId = null, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<DeviceRecord>>(Query(
            // The cursor is the last Device ID of the previous page, in the page order (created_at, device_id).
            $"SELECT {DeviceColumns} FROM devices WHERE ($org IS NULL OR org_id = $org) AND ($after IS NULL OR (created_at, device_id) > (SELECT created_at, device_id FROM devices WHERE device_id = $after)) ORDER BY created_at, device_id LIMIT $limit",
            ReadDevice,
            ("$org", orgId),
            ("$after", afterDeviceId),
            ("$limit", limit)));

    public Task<int> CountDevicesAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(Query("SELECT COUNT(*) FROM devices", r => r.GetInt32(0)).Single());

    public Task<RegisterDeviceOutcome> RegisterDeviceAsync(RegisterDeviceCommand command, CancellationToken cancellationToken = default) =>
        // The one writer serialises registrations, so the checks below and the writes they allow see the same state.
        _database.WriteAsync(context => Register(context, command), cancellationToken);

    private static RegisterDeviceOutcome Register(SqliteWriteContext context, RegisterDeviceCommand command)
    {
        var existing = command.DeviceId is { } id
            ? QueryOne(context, $"SELECT {DeviceColumns} FROM devices WHERE device_id = $id", ReadDevice, ("$id", id))
            : QueryOne(context, $"SELECT {DeviceColumns} FROM devices WHERE org_id = $org AND client_id = $client", ReadDevice, ("$org", command.OrgId), ("$client", command.ClientId));

        if (existing is null && command.DeviceId is not null)
        {
            return new RegisterDeviceOutcome(RegisterDeviceResult.NotFound, null);
        }

        var now = ToUnix(command.Now);
        var token = command.RegistrationToken;
        if (existing is not null)
        {
            if (command.RefusalFor(existing) is { } refused)
            {
                return refused;
            }

            context.Execute(
                """
                UPDATE devices SET device_name = COALESCE($name, device_name), metadata = COALESCE($metadata, metadata),
                    updated_at = $now, last_registered_at = $now
                WHERE device_id = $id
                """,
                ("$name", command.Name),
                ("$metadata", command.MetadataJson),
                ("$now", now),
                ("$id", existing.DeviceId));
            RecordIssued(context, token);
            return new RegisterDeviceOutcome(RegisterDeviceResult.Updated, existing with
            {
                Name = command.Name ?? existing.Name,
                MetadataJson = command.MetadataJson ?? existing.MetadataJson,
                UpdatedAt = command.Now,
                LastRegisteredAt = command.Now,
            });
        }

        if (token is not null && token.DeviceId != command.NewDeviceId)
        {
            // Signed for a device that is no longer there to register (none is: the caller decides again).
            return new RegisterDeviceOutcome(RegisterDeviceResult.Stale, null);
        }

        if (command.ProvisioningTokenId is { } tokenId)
        {
            var counted = context.Execute(
                "UPDATE provisioning_tokens SET uses = uses + 1 WHERE id = $id AND (max_uses IS NULL OR uses < max_uses)",
                ("$id", tokenId));
            if (counted == 0)
            {
                return new RegisterDeviceOutcome(RegisterDeviceResult.TokenUsedUp, null);
            }
        }

        context.Execute(
            $"""
            INSERT INTO devices ({DeviceColumns})
            VALUES ($id, $org, $client, $name, $metadata, 'active', $token, $now, $now, $now, NULL, NULL)
            """,
            ("$id", command.NewDeviceId),
            ("$org", command.OrgId),
            ("$client", command.ClientId),
            ("$name", command.Name),
            ("$metadata", command.MetadataJson),
            ("$token", command.ProvisioningTokenId),
            ("$now", now));
        RecordIssued(context, token);
        return new RegisterDeviceOutcome(RegisterDeviceResult.Created, command.NewDevice());
    }

    private static void RecordIssued(SqliteWriteContext context, RegistrationTokenRecord? token)
    {
        if (token is not null)
        {
            InsertRegistrationToken(context, token);
        }
    }
}
