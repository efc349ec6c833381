using Enroll.Protocol.Admin;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private static readonly string HistorySql = DeviceHistoryQuery.Sql("$1::text", "$2::bigint", "$3::text", "$4", "lpad(a.id::text, 19, '0')", " COLLATE \"C\"");

    public async Task<bool> SaveDeviceStatusAsync(DeviceOutboxInfo report, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(report);
        return await WriteAsync(
            $"""
            INSERT INTO device_status ({DeviceHistoryQuery.StatusColumns}) VALUES ($1, $2, $3, $4, $5::double precision, $6)
            ON CONFLICT (device_id) DO UPDATE SET reported_at = excluded.reported_at, pending = excluded.pending, pending_bytes = excluded.pending_bytes,
                oldest_age_s = excluded.oldest_age_s, quarantined = excluded.quarantined
            WHERE excluded.reported_at >= device_status.reported_at
            """,
            cancellationToken,
            report.DeviceId,
            ToUnix(report.ReportedAt),
            report.Pending,
            report.PendingBytes,
            report.OldestAgeSeconds,
            report.Quarantined).ConfigureAwait(false) > 0;
    }

    public async Task<DeviceOutboxInfo?> FindDeviceStatusAsync(string deviceId, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {DeviceHistoryQuery.StatusColumns} FROM device_status WHERE device_id = $1", DeviceHistoryQuery.ReadStatus, cancellationToken, deviceId).ConfigureAwait(false)).FirstOrDefault();

    public async Task<IReadOnlyList<DeviceOutboxInfo>> DeepestOutboxesAsync(int limit, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            $"SELECT {DeviceHistoryQuery.StatusColumns} FROM device_status WHERE pending > 0 ORDER BY pending DESC, pending_bytes DESC, device_id COLLATE \"C\" LIMIT $1",
            DeviceHistoryQuery.ReadStatus,
            cancellationToken,
            limit).ConfigureAwait(false);

    public async Task<IReadOnlyList<DeviceHistoryEntry>> ListDeviceHistoryAsync(string deviceId, int limit, DeviceHistoryCursor? before, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            HistorySql,
            DeviceHistoryQuery.Read,
            cancellationToken,
            deviceId,
            before is null ? null : ToUnix(before.At),
            before?.Key,
            limit).ConfigureAwait(false);

    public async Task<IReadOnlyList<RegistrationTokenRecord>> ListLiveRegistrationTokensAsync(string deviceId, DateTimeOffset now, int limit, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            "SELECT jti, device_id, issued_at, expires_at FROM registration_tokens WHERE device_id = $1 AND replaced_by IS NULL AND expires_at > $2 ORDER BY issued_at DESC, jti COLLATE \"C\" LIMIT $3",
            DeviceHistoryQuery.ReadToken,
            cancellationToken,
            deviceId,
            ToUnix(now),
            limit).ConfigureAwait(false);
}
