using Enroll.Protocol.Messages;
using Npgsql;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private const string OperationColumns =
        "operation_id, org_id, client_id, provisioning_token_id, desired_device_id, device_id, reprovision_of, device_name, metadata, status, reason, " +
        "created_at, expires_at, decided_at, decided_by, registration_token, registration_token_jti, registration_token_expires_at, completed_at";

    public Task CreateOperationAsync(OperationRecord operation, CancellationToken cancellationToken = default) =>
        WriteAsync(
            $"""
            INSERT INTO provisioning_operations ({OperationColumns})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL, NULL, NULL, NULL)
            """,
            cancellationToken,
            operation.OperationId,
            operation.OrgId,
            operation.ClientId,
            operation.ProvisioningTokenId,
            operation.DesiredDeviceId,
            operation.DeviceId,
            operation.ReprovisionOf,
            operation.DeviceName,
            operation.MetadataJson,
            operation.Status,
            operation.Reason,
            ToUnix(operation.CreatedAt),
            ToUnix(operation.ExpiresAt),
            ToUnix(operation.DecidedAt),
            operation.DecidedBy);

    public async Task<OperationRecord?> FindOperationAsync(string operationId, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {OperationColumns} FROM provisioning_operations WHERE operation_id = $1", ReadOperation, cancellationToken, operationId).ConfigureAwait(false)).FirstOrDefault();

    public async Task<OperationRecord?> FindPendingOperationAsync(string orgId, string clientId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        (await ReadAsync(
            $"SELECT {OperationColumns} FROM provisioning_operations WHERE org_id = $1 AND client_id = $2 AND status = 'pending' AND expires_at > $3 ORDER BY created_at DESC, operation_id DESC LIMIT 1",
            ReadOperation,
            cancellationToken,
            orgId,
            clientId,
            ToUnix(now)).ConfigureAwait(false)).FirstOrDefault();

    public async Task<IReadOnlyList<OperationRecord>> ListOperationsAsync(string? status, int limit, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            $"SELECT {OperationColumns} FROM provisioning_operations WHERE ($1::text IS NULL OR status = $1::text) ORDER BY created_at DESC, operation_id DESC LIMIT $2",
            ReadOperation,
            cancellationToken,
            status,
            limit).ConfigureAwait(false);

    public Task<int> ExpireOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        WriteAsync(
            "UPDATE provisioning_operations SET status = 'expired', decided_at = $1, decided_by = 'expiry' WHERE status = 'pending' AND expires_at <= $1",
            cancellationToken,
            ToUnix(now));

    public Task<DecideOperationOutcome> DecideOperationAsync(string operationId, bool approve, string? reason, string decidedBy, string newDeviceId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        TransactAsync((connection, transaction) => DecideAsync(connection, transaction, operationId, approve, reason, decidedBy, newDeviceId, now, cancellationToken), cancellationToken);

    private static async Task<(DecideOperationOutcome, End)> DecideAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string operationId, bool approve, string? reason, string decidedBy, string newDeviceId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // The operation row stays locked until commit: of concurrent decisions (on any instance) one sees it pending.
        var operation = await QueryOneAsync(connection, transaction, $"SELECT {OperationColumns} FROM provisioning_operations WHERE operation_id = $1 FOR UPDATE", ReadOperation, cancellationToken, operationId).ConfigureAwait(false);
        if (operation is null)
        {
            return (new DecideOperationOutcome(DecideOperationResult.NotFound, null), End.Rollback);
        }

        if (operation.Status == OperationStatus.Pending && operation.ExpiresAt <= now)
        {
            await ExecuteAsync(connection, transaction, "UPDATE provisioning_operations SET status = 'expired', decided_at = $2, decided_by = 'expiry' WHERE operation_id = $1", cancellationToken, operationId, ToUnix(now)).ConfigureAwait(false);
            return (new DecideOperationOutcome(DecideOperationResult.Expired, operation with { Status = OperationStatus.Expired }), End.Commit);
        }

        if (operation.Status != OperationStatus.Pending)
        {
            return (new DecideOperationOutcome(DecideOperationResult.NotPending, operation), End.Rollback);
        }

        string? deviceId = null;
        if (approve)
        {
            var assigned = await ApproveDeviceAsync(connection, transaction, operation, newDeviceId, now, cancellationToken).ConfigureAwait(false);
            if (assigned.Result != DecideOperationResult.Decided)
            {
                return (new DecideOperationOutcome(assigned.Result, operation), End.Rollback);
            }

            deviceId = assigned.DeviceId;
        }

        var status = approve ? OperationStatus.Approved : OperationStatus.Rejected;
        await ExecuteAsync(
            connection,
            transaction,
            "UPDATE provisioning_operations SET status = $2, reason = $3, device_id = $4, decided_at = $5, decided_by = $6 WHERE operation_id = $1",
            cancellationToken,
            operationId,
            status,
            reason,
            deviceId,
            ToUnix(now),
            decidedBy).ConfigureAwait(false);
        return (new DecideOperationOutcome(DecideOperationResult.Decided, operation with
        {
            Status = status,
            Reason = reason,
            DeviceId = deviceId,
            DecidedAt = now,
            DecidedBy = decidedBy,
        }), End.Commit);
    }

    /// <summary>Creates the approved device, or re-enables the one being re-provisioned (its old tokens stay revoked).</summary>
    private static async Task<(DecideOperationResult Result, string? DeviceId)> ApproveDeviceAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, OperationRecord operation, string newDeviceId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var unixNow = ToUnix(now);
        if (operation.ReprovisionOf is { } existingId)
        {
            await ExecuteAsync(
                connection,
                transaction,
                """
                UPDATE devices SET status = 'active', revoked_at = NULL, tokens_valid_after = $2, updated_at = $3,
                    device_name = COALESCE($4, device_name), metadata = COALESCE($5, metadata)
                WHERE device_id = $1
                """,
                cancellationToken,
                existingId,
                TokensValidAfter(now),
                unixNow,
                operation.DeviceName,
                operation.MetadataJson).ConfigureAwait(false);
            return (DecideOperationResult.Decided, existingId);
        }

        // The ID or the client taken (also by a registration committing concurrently): the insert does nothing.
        var deviceId = operation.DesiredDeviceId ?? newDeviceId;
        var inserted = await ExecuteAsync(
            connection,
            transaction,
            $"""
            INSERT INTO devices ({DeviceColumns})
            VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7, NULL, NULL, NULL)
            ON CONFLICT DO NOTHING
            """,
            cancellationToken,
            deviceId,
            operation.OrgId,
            operation.ClientId,
            operation.DeviceName,
            operation.MetadataJson,
            operation.ProvisioningTokenId,
            unixNow).ConfigureAwait(false);
        if (inserted == 0)
        {
            return (DecideOperationResult.DeviceIdTaken, null);
        }

        if (!await CountUseAsync(connection, transaction, operation.ProvisioningTokenId, cancellationToken).ConfigureAwait(false))
        {
            return (DecideOperationResult.TokenUsedUp, null);
        }

        return (DecideOperationResult.Decided, deviceId);
    }

    public Task<OperationRecord> AttachRegistrationTokenAsync(string operationId, string token, RegistrationTokenRecord record, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                // Only the first complete mints; a repeated (or concurrent) complete gets the same token back.
                var updated = await ExecuteAsync(
                    connection,
                    transaction,
                    """
                    UPDATE provisioning_operations SET registration_token = $2, registration_token_jti = $3, registration_token_expires_at = $4
                    WHERE operation_id = $1 AND status = 'approved' AND registration_token_jti IS NULL
                    """,
                    cancellationToken,
                    operationId,
                    token,
                    record.TokenId,
                    ToUnix(record.ExpiresAt)).ConfigureAwait(false);
                if (updated > 0)
                {
                    await InsertRegistrationTokenAsync(connection, transaction, record, cancellationToken).ConfigureAwait(false);
                }

                var operation = await QueryOneAsync(connection, transaction, $"SELECT {OperationColumns} FROM provisioning_operations WHERE operation_id = $1", ReadOperation, cancellationToken, operationId).ConfigureAwait(false);
                return (operation!, End.Commit);
            },
            cancellationToken);

    public Task CompleteOperationByTokenAsync(string tokenId, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        WriteAsync(
            "UPDATE provisioning_operations SET status = 'completed', completed_at = $2, registration_token = NULL WHERE registration_token_jti = $1 AND status = 'approved'",
            cancellationToken,
            tokenId,
            ToUnix(now));
}
