using Enroll.Protocol.Messages;
using Enroll.Shared.Storage;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string OperationColumns =
        "operation_id, org_id, client_id, provisioning_token_id, desired_device_id, device_id, reprovision_of, device_name, metadata, status, reason, " +
        "created_at, expires_at, decided_at, decided_by, registration_token, registration_token_jti, registration_token_expires_at, completed_at";

    public Task CreateOperationAsync(OperationRecord operation, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                $"""
                INSERT INTO provisioning_operations ({OperationColumns})
                VALUES ($id, $org, $client, $token, $desired, $device, $reprovision, $name, $metadata, $status, $reason, $created, $expires, $decided, $decidedBy, NULL, NULL, NULL, NULL)
                """,
                ("$id", operation.OperationId),
                ("$org", operation.OrgId),
                ("$client", operation.ClientId),
                ("$token", operation.ProvisioningTokenId),
                ("$desired", operation.DesiredDeviceId),
                ("$device", operation.DeviceId),
                ("$reprovision", operation.ReprovisionOf),
                ("$name", operation.DeviceName),
                ("$metadata", operation.MetadataJson),
                ("$status", operation.Status),
                ("$reason", operation.Reason),
                ("$created", ToUnix(operation.CreatedAt)),
                ("$expires", ToUnix(operation.ExpiresAt)),
                ("$decided", ToUnix(operation.DecidedAt)),
                ("$decidedBy", operation.DecidedBy)),
            cancellationToken);

    public Task<OperationRecord?> FindOperationAsync(string operationId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query($"SELECT {OperationColumns} FROM provisioning_operations WHERE operation_id = $id", ReadOperation, ("$id", operationId)).FirstOrDefault());

    public Task<OperationRecord?> FindPendingOperationAsync(string orgId, string clientId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(
            $"SELECT {OperationColumns} FROM provisioning_operations WHERE org_id = $org AND client_id = $client AND status = 'pending' AND expires_at > $now ORDER BY created_at DESC LIMIT 1",
            ReadOperation,
            ("$org", orgId),
            ("$client", clientId),
            ("$now", ToUnix(now))).FirstOrDefault());

    public Task<IReadOnlyList<OperationRecord>> ListOperationsAsync(string? status, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<OperationRecord>>(Query(
            $"SELECT {OperationColumns} FROM provisioning_operations WHERE ($status IS NULL OR status = $status) ORDER BY created_at DESC LIMIT $limit",
            ReadOperation,
            ("$status", status),
            ("$limit", limit)));

    public Task<int> ExpireOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                "UPDATE provisioning_operations SET status = 'expired', decided_at = $now, decided_by = 'expiry' WHERE status = 'pending' AND expires_at <= $now",
                ("$now", ToUnix(now))),
            cancellationToken);

    public Task<DecideOperationOutcome> DecideOperationAsync(string operationId, bool approve, string? reason, string decidedBy, string newDeviceId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(context => Decide(context, operationId, approve, reason, decidedBy, newDeviceId, now), cancellationToken);

    private static DecideOperationOutcome Decide(SqliteWriteContext context, string operationId, bool approve, string? reason, string decidedBy, string newDeviceId, DateTimeOffset now)
    {
        var operation = QueryOne(context, $"SELECT {OperationColumns} FROM provisioning_operations WHERE operation_id = $id", ReadOperation, ("$id", operationId));
        if (operation is null)
        {
            return new DecideOperationOutcome(DecideOperationResult.NotFound, null);
        }

        if (operation.Status == OperationStatus.Pending && operation.ExpiresAt <= now)
        {
            context.Execute("UPDATE provisioning_operations SET status = 'expired', decided_at = $now, decided_by = 'expiry' WHERE operation_id = $id", ("$now", ToUnix(now)), ("$id", operationId));
            return new DecideOperationOutcome(DecideOperationResult.Expired, operation with { Status = OperationStatus.Expired });
        }

        if (operation.Status != OperationStatus.Pending)
        {
            return new DecideOperationOutcome(DecideOperationResult.NotPending, operation);
        }

        string? deviceId = null;
        if (approve)
        {
            var assigned = ApproveDevice(context, operation, newDeviceId, now);
            if (assigned.Result != DecideOperationResult.Decided)
            {
                return new DecideOperationOutcome(assigned.Result, operation);
            }

            deviceId = assigned.DeviceId;
        }

        var status = approve ? OperationStatus.Approved : OperationStatus.Rejected;
        context.Execute(
            "UPDATE provisioning_operations SET status = $status, reason = $reason, device_id = $device, decided_at = $now, decided_by = $by WHERE operation_id = $id",
            ("$status", status),
            ("$reason", reason),
            ("$device", deviceId),
            ("$now", ToUnix(now)),
            ("$by", decidedBy),
            ("$id", operationId));
        return new DecideOperationOutcome(DecideOperationResult.Decided, operation with
        {
            Status = status,
            Reason = reason,
            DeviceId = deviceId,
            DecidedAt = now,
            DecidedBy = decidedBy,
        });
    }

    /// <summary>Creates the approved device, or re-enables the one being re-provisioned (its old tokens stay revoked).</summary>
    private static (DecideOperationResult Result, string? DeviceId) ApproveDevice(SqliteWriteContext context, OperationRecord operation, string newDeviceId, DateTimeOffset now)
    {
        var unixNow = ToUnix(now);
        if (operation.ReprovisionOf is { } existingId)
        {
            context.Execute(
                """
                UPDATE devices SET status = 'active', revoked_at = NULL, tokens_valid_after = $after, updated_at = $now,
                    device_name = COALESCE($name, device_name), metadata = COALESCE($metadata, metadata)
                WHERE device_id = $id
                """,
                ("$now", unixNow),
                ("$after", TokensValidAfter(now)),
                ("$name", operation.DeviceName),
                ("$metadata", operation.MetadataJson),
                ("$id", existingId));
            return (DecideOperationResult.Decided, existingId);
        }

        var deviceId = operation.DesiredDeviceId ?? newDeviceId;
        var taken = QueryOne(context, $"SELECT {DeviceColumns} FROM devices WHERE device_id = $id OR (org_id = $org AND client_id = $client)", ReadDevice,
            ("$id", deviceId), ("$org", operation.OrgId), ("$client", operation.ClientId));
        if (taken is not null)
        {
            return (DecideOperationResult.DeviceIdTaken, null);
        }

        var counted = context.Execute(
            "UPDATE provisioning_tokens SET uses = uses + 1 WHERE id = $id AND (max_uses IS NULL OR uses < max_uses)",
            ("$id", operation.ProvisioningTokenId));
        if (counted == 0)
        {
            return (DecideOperationResult.TokenUsedUp, null);
        }

        context.Execute(
            $"""
            INSERT INTO devices ({DeviceColumns})
            VALUES ($id, $org, $client, $name, $metadata, 'active', $token, $now, $now, NULL, NULL, NULL)
            """,
            ("$id", deviceId),
            ("$org", operation.OrgId),
            ("$client", operation.ClientId),
            ("$name", operation.DeviceName),
            ("$metadata", operation.MetadataJson),
            ("$token", operation.ProvisioningTokenId),
            ("$now", unixNow));
        return (DecideOperationResult.Decided, deviceId);
    }

    public Task<OperationRecord> AttachRegistrationTokenAsync(string operationId, string token, RegistrationTokenRecord record, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                // Only the first complete mints; a repeated complete gets the same token back.
                var updated = context.Execute(
                    """
                    UPDATE provisioning_operations SET registration_token = $token, registration_token_jti = $jti, registration_token_expires_at = $expires
                    WHERE operation_id = $id AND status = 'approved' AND registration_token_jti IS NULL
                    """,
                    ("$token", token),
                    ("$jti", record.TokenId),
                    ("$expires", ToUnix(record.ExpiresAt)),
                    ("$id", operationId));
                if (updated > 0)
                {
                    InsertRegistrationToken(context, record);
                }

                return QueryOne(context, $"SELECT {OperationColumns} FROM provisioning_operations WHERE operation_id = $id", ReadOperation, ("$id", operationId))!;
            },
            cancellationToken);

    public Task CompleteOperationByTokenAsync(string tokenId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                "UPDATE provisioning_operations SET status = 'completed', completed_at = $now, registration_token = NULL WHERE registration_token_jti = $jti AND status = 'approved'",
                ("$now", ToUnix(now)),
                ("$jti", tokenId)),
            cancellationToken);
}
