using Enroll.Shared.Storage;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    public Task RecordRegistrationTokenAsync(RegistrationTokenRecord record, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(context => InsertRegistrationToken(context, record), cancellationToken);

    public Task<RegistrationTokenUse> UseRegistrationTokenAsync(string tokenId, string deviceId, DateTimeOffset now, TimeSpan grace, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                using var command = context.CreateCommand("SELECT device_id, replaced_at, grace_used FROM registration_tokens WHERE jti = $jti");
                command.Parameters.AddWithValue("$jti", tokenId);
                string? owner = null;
                long? replacedAt = null;
                var graceUsed = false;
                using (var reader = command.ExecuteReader())
                {
                    if (reader.Read())
                    {
                        owner = reader.GetString(0);
                        replacedAt = reader.IsDBNull(1) ? null : reader.GetInt64(1);
                        graceUsed = reader.GetInt64(2) != 0;
                    }
                }

                if (owner is null || owner != deviceId)
                {
                    return RegistrationTokenUse.Unknown;
                }

                if (replacedAt is null)
                {
                    return RegistrationTokenUse.Current;
                }

                if (!graceUsed && FromUnix(replacedAt.Value) + grace >= now)
                {
                    context.Execute("UPDATE registration_tokens SET grace_used = 1 WHERE jti = $jti", ("$jti", tokenId));
                    return RegistrationTokenUse.GraceUse;
                }

                // A refreshed-away token came back: someone holds a copy. Revoke everything the device holds.
                RevokeTokens(context, deviceId, now);
                return RegistrationTokenUse.Reused;
            },
            cancellationToken);

    public Task ReplaceRegistrationTokenAsync(string oldTokenId, RegistrationTokenRecord replacement, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                InsertRegistrationToken(context, replacement);
                context.Execute(
                    "UPDATE registration_tokens SET replaced_by = $new, replaced_at = $now WHERE jti = $old AND replaced_at IS NULL",
                    ("$new", replacement.TokenId),
                    ("$now", ToUnix(now)),
                    ("$old", oldTokenId));
            },
            cancellationToken);

    public Task<DeviceRecord?> RevokeDeviceAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                context.Execute(
                    "UPDATE devices SET status = 'revoked', revoked_at = COALESCE(revoked_at, $at), tokens_valid_after = $after, updated_at = $at WHERE device_id = $id",
                    ("$at", ToUnix(at)),
                    ("$after", TokensValidAfter(at)),
                    ("$id", deviceId));
                return QueryOne(context, $"SELECT {DeviceColumns} FROM devices WHERE device_id = $id", ReadDevice, ("$id", deviceId));
            },
            cancellationToken);

    public Task RevokeDeviceTokensAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(context => RevokeTokens(context, deviceId, at), cancellationToken);

    private static void RevokeTokens(SqliteWriteContext context, string deviceId, DateTimeOffset at) =>
        context.Execute(
            "UPDATE devices SET tokens_valid_after = MAX(COALESCE(tokens_valid_after, 0), $after), updated_at = $at WHERE device_id = $id",
            ("$at", ToUnix(at)),
            ("$after", TokensValidAfter(at)),
            ("$id", deviceId));

    /// <summary><see cref="IDeviceStore.TokensValidAfter"/> in the file's unit (Unix milliseconds).</summary>
    internal static long TokensValidAfter(DateTimeOffset at) => ToUnix(IDeviceStore.TokensValidAfter(at));

    private static void InsertRegistrationToken(SqliteWriteContext context, RegistrationTokenRecord record) =>
        context.Execute(
            "INSERT OR IGNORE INTO registration_tokens (jti, device_id, issued_at, expires_at, replaced_by, replaced_at, grace_used) VALUES ($jti, $device, $issued, $expires, NULL, NULL, 0)",
            ("$jti", record.TokenId),
            ("$device", record.DeviceId),
            ("$issued", ToUnix(record.IssuedAt)),
            ("$expires", ToUnix(record.ExpiresAt)));
}
