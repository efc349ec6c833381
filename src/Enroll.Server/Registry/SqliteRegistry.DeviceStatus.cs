using Enroll.Protocol.Admin;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private static readonly string HistorySql = DeviceHistoryQuery.Sql("$dev", "$at", "$key", "$limit", "printf('%019d', a.id)");

    public Task<bool> SaveDeviceStatusAsync(DeviceOutboxInfo report, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(report);
        return _database.WriteAsync(
            context => context.Execute(
                $"""
                INSERT INTO device_status ({DeviceHistoryQuery.StatusColumns}) VALUES ($id, $at, $pending, $bytes, $age, $quarantined)
                ON CONFLICT (device_id) DO UPDATE SET reported_at = excluded.reported_at, pending = excluded.pending, pending_bytes = excluded.pending_bytes,
                    oldest_age_s = excluded.oldest_age_s, quarantined = excluded.quarantined
                WHERE excluded.reported_at >= device_status.reported_at
                """,
                ("$id", report.DeviceId),
                ("$at", ToUnix(report.ReportedAt)),
                ("$pending", report.Pending),
                ("$bytes", report.PendingBytes),
                ("$age", report.OldestAgeSeconds),
                ("$quarantined", report.Quarantined)) > 0,
            isolated: false,
            cancellationToken);
    }

    public Task<DeviceOutboxInfo?> FindDeviceStatusAsync(string deviceId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query($"SELECT {DeviceHistoryQuery.StatusColumns} FROM device_status WHERE device_id = $id", DeviceHistoryQuery.ReadStatus, ("$id", deviceId)).FirstOrDefault());

    public Task<IReadOnlyList<DeviceOutboxInfo>> DeepestOutboxesAsync(int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<DeviceOutboxInfo>>(Query(
            $"SELECT {DeviceHistoryQuery.StatusColumns} FROM device_status WHERE pending > 0 ORDER BY pending DESC, pending_bytes DESC, device_id LIMIT $limit",
            DeviceHistoryQuery.ReadStatus,
            ("$limit", limit)));

    public Task<IReadOnlyList<DeviceHistoryEntry>> ListDeviceHistoryAsync(string deviceId, int limit, DeviceHistoryCursor? before, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<DeviceHistoryEntry>>(Query(
            HistorySql,
            DeviceHistoryQuery.Read,
            ("$dev", deviceId),
            ("$at", before is null ? null : ToUnix(before.At)),
            ("$key", before?.Key),
            ("$limit", limit)));

    public Task<IReadOnlyList<RegistrationTokenRecord>> ListLiveRegistrationTokensAsync(string deviceId, DateTimeOffset now, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<RegistrationTokenRecord>>(Query(
            "SELECT jti, device_id, issued_at, expires_at FROM registration_tokens WHERE device_id = $dev AND replaced_by IS NULL AND expires_at > $now ORDER BY issued_at DESC, jti LIMIT $limit",
            DeviceHistoryQuery.ReadToken,
            ("$dev", deviceId),
            ("$now", ToUnix(now)),
            ("$limit", limit)));
}
