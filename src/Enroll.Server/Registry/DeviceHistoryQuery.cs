using System.Data.Common;
using Enroll.Protocol.Admin;

namespace Enroll.Server.Registry;

/// <summary>
/// The one query behind <see cref="IDeviceStatusStore.ListDeviceHistoryAsync"/>, written once for both stores: a union of
/// the rows that already record a device's registration, each given a sort key that is unique within the device, so
/// pages are cut by <c>(at, key)</c> and never skip or repeat an entry. Placeholders: <c>@dev</c>, <c>@at</c>,
/// <c>@key</c>, <c>@limit</c> (each store puts its own parameter syntax in) <c>{audit_key}</c> (a zero-padded
/// audit ID: SQLite's <c>printf</c>, PostgreSQL's <c>lpad</c>) and <c>{collate}</c> (PostgreSQL compares the keys
/// byte by byte, as SQLite does).
/// </summary>
internal static class DeviceHistoryQuery
{
    private const string Template = """
        WITH ops AS (
            SELECT operation_id, client_id, provisioning_token_id, reprovision_of, status, reason, created_at, expires_at, decided_at, decided_by, registration_token_jti
            FROM provisioning_operations WHERE device_id = @dev OR reprovision_of = @dev
        ),
        ev AS (
            SELECT created_at AS at, 'o' || operation_id || '.1' AS k, 'operation.created' AS kind, CAST(NULL AS TEXT) AS who, operation_id AS op,
                provisioning_token_id AS token, CASE WHEN reprovision_of IS NULL THEN 0 ELSE 1 END AS reprov, client_id AS client, CAST(NULL AS TEXT) AS detail
            FROM ops
            UNION ALL
            SELECT decided_at, 'o' || operation_id || '.2', CASE WHEN status = 'rejected' THEN 'operation.rejected' ELSE 'operation.approved' END, decided_by, operation_id,
                provisioning_token_id, CASE WHEN reprovision_of IS NULL THEN 0 ELSE 1 END, client_id, reason
            FROM ops WHERE decided_at IS NOT NULL
            UNION ALL
            SELECT expires_at, 'o' || operation_id || '.3', 'operation.expired', CAST(NULL AS TEXT), operation_id,
                provisioning_token_id, CASE WHEN reprovision_of IS NULL THEN 0 ELSE 1 END, client_id, CAST(NULL AS TEXT)
            FROM ops WHERE status = 'expired' AND decided_at IS NULL
            UNION ALL
            SELECT created_at, 'd.1', 'device.created', CAST(NULL AS TEXT), CAST(NULL AS TEXT), provisioning_token_id, CAST(NULL AS INTEGER), client_id, CAST(NULL AS TEXT)
            FROM devices WHERE device_id = @dev
            UNION ALL
            SELECT revoked_at, 'd.9', 'device.revoked', CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS INTEGER), client_id, CAST(NULL AS TEXT)
            FROM devices WHERE device_id = @dev AND revoked_at IS NOT NULL
            UNION ALL
            SELECT t.issued_at, 't' || t.jti, 'device.registered', CASE WHEN o.operation_id IS NULL THEN 'device' ELSE CAST(NULL AS TEXT) END, o.operation_id,
                CAST(NULL AS TEXT), CAST(NULL AS INTEGER), CAST(NULL AS TEXT),
                CASE WHEN o.operation_id IS NOT NULL THEN 'provisioned'
                     WHEN EXISTS (SELECT 1 FROM registration_tokens e WHERE e.device_id = t.device_id AND e.issued_at < t.issued_at) THEN 're-registration'
                     ELSE 'registration' END
            FROM registration_tokens t LEFT JOIN provisioning_operations o ON o.registration_token_jti = t.jti
            WHERE t.device_id = @dev AND NOT EXISTS (SELECT 1 FROM registration_tokens r WHERE r.device_id = t.device_id AND r.replaced_by = t.jti)
            UNION ALL
            SELECT a.at, 'a' || {audit_key}, 'audit.' || a.action, a.operator, CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS INTEGER), CAST(NULL AS TEXT), a.detail
            FROM audit_log a
            WHERE a.target = @dev OR substr(a.target, 1, length(@dev) + 1) = @dev || ' ' OR a.target IN (SELECT operation_id FROM ops)
        )
        SELECT at, k, kind, who, op, token, reprov, client, detail FROM ev
        WHERE @at IS NULL OR at < @at OR (at = @at AND k{collate} < @key)
        ORDER BY at DESC, k{collate} DESC
        LIMIT @limit
        """;

    public static string Sql(string dev, string at, string key, string limit, string auditKey, string collate = "") =>
        Template.Replace("@dev", dev, StringComparison.Ordinal)
            .Replace("@at", at, StringComparison.Ordinal)
            .Replace("@key", key, StringComparison.Ordinal)
            .Replace("@limit", limit, StringComparison.Ordinal)
            .Replace("{audit_key}", auditKey, StringComparison.Ordinal)
            .Replace("{collate}", collate, StringComparison.Ordinal);

    public static DeviceHistoryEntry Read(DbDataReader r)
    {
        var at = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(0));
        var key = r.GetString(1);
        return new DeviceHistoryEntry
        {
            Id = new DeviceHistoryCursor(at, key).Format(),
            At = at,
            Kind = r.GetString(2),
            By = r.IsDBNull(3) ? null : r.GetString(3),
            OperationId = r.IsDBNull(4) ? null : r.GetString(4),
            ProvisioningTokenId = r.IsDBNull(5) ? null : r.GetString(5),
            Reprovision = r.IsDBNull(6) ? null : Convert.ToInt64(r.GetValue(6), System.Globalization.CultureInfo.InvariantCulture) != 0,
            ClientId = r.IsDBNull(7) ? null : r.GetString(7),
            Detail = r.IsDBNull(8) ? null : r.GetString(8),
        };
    }

    /// <summary>A status row: device_id, reported_at, pending, pending_bytes, oldest_age_s, quarantined.</summary>
    public const string StatusColumns = "device_id, reported_at, pending, pending_bytes, oldest_age_s, quarantined";

    public static DeviceOutboxInfo ReadStatus(DbDataReader r) => new()
    {
        DeviceId = r.GetString(0),
        ReportedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(1)),
        Pending = r.GetInt64(2),
        PendingBytes = r.GetInt64(3),
        OldestAgeSeconds = r.IsDBNull(4) ? null : r.GetDouble(4),
        Quarantined = r.GetInt64(5),
    };

    /// <summary>A Registration Token row of <c>jti, device_id, issued_at, expires_at</c>.</summary>
    public static RegistrationTokenRecord ReadToken(DbDataReader r) => new()
    {
        TokenId = r.GetString(0),
        DeviceId = r.GetString(1),
        IssuedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(2)),
        ExpiresAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(3)),
    };
}
