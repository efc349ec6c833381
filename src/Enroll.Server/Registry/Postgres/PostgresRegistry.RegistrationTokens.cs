using Npgsql;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    public Task RecordRegistrationTokenAsync(RegistrationTokenRecord record, CancellationToken cancellationToken = default) =>
        WriteAsync(InsertRegistrationTokenSql, cancellationToken, record.TokenId, record.DeviceId, ToUnix(record.IssuedAt), ToUnix(record.ExpiresAt));

    public Task<RegistrationTokenUse> UseRegistrationTokenAsync(string tokenId, string deviceId, DateTimeOffset now, TimeSpan grace, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                // The ledger row stays locked until commit: of two instances seeing the same refreshed-away token at once,
                // one takes the grace use and the other sees it taken.
                var row = await QueryOneAsync(
                    connection,
                    transaction,
                    "SELECT device_id, replaced_at, grace_used FROM registration_tokens WHERE jti = $1 FOR UPDATE",
                    r => new TokenRow(r.GetString(0), r.IsDBNull(1) ? null : r.GetInt64(1), r.GetBoolean(2)),
                    cancellationToken,
                    tokenId).ConfigureAwait(false);
                if (row is null || row.DeviceId != deviceId)
                {
                    return (RegistrationTokenUse.Unknown, End.Rollback);
                }

                if (row.ReplacedAt is null)
                {
                    return (RegistrationTokenUse.Current, End.Rollback);
                }

                if (!row.GraceUsed && FromUnix(row.ReplacedAt.Value) + grace >= now)
                {
                    await ExecuteAsync(connection, transaction, "UPDATE registration_tokens SET grace_used = true WHERE jti = $1", cancellationToken, tokenId).ConfigureAwait(false);
                    return (RegistrationTokenUse.GraceUse, End.Commit);
                }

                // A refreshed-away token came back: someone holds a copy. Revoke everything the device holds.
                await ExecuteAsync(connection, transaction, RevokeTokensSql, cancellationToken, deviceId, ToUnix(now), TokensValidAfter(now)).ConfigureAwait(false);
                return (RegistrationTokenUse.Reused, End.Commit);
            },
            cancellationToken);

    public Task ReplaceRegistrationTokenAsync(string oldTokenId, RegistrationTokenRecord replacement, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                await InsertRegistrationTokenAsync(connection, transaction, replacement, cancellationToken).ConfigureAwait(false);
                await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE registration_tokens SET replaced_by = $2, replaced_at = $3 WHERE jti = $1 AND replaced_at IS NULL",
                    cancellationToken,
                    oldTokenId,
                    replacement.TokenId,
                    ToUnix(now)).ConfigureAwait(false);
            },
            cancellationToken);

    private const string InsertRegistrationTokenSql =
        "INSERT INTO registration_tokens (jti, device_id, issued_at, expires_at, replaced_by, replaced_at, grace_used) VALUES ($1, $2, $3, $4, NULL, NULL, false) ON CONFLICT (jti) DO NOTHING";

    private static Task<int> InsertRegistrationTokenAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, RegistrationTokenRecord record, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, transaction, InsertRegistrationTokenSql, cancellationToken, record.TokenId, record.DeviceId, ToUnix(record.IssuedAt), ToUnix(record.ExpiresAt));

    private sealed record TokenRow(string DeviceId, long? ReplacedAt, bool GraceUsed);
}
