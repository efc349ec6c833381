using Enroll.Protocol.Admin;
using Enroll.Protocol.Messages;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string RefusalUpsert =
        $"""
        INSERT INTO refusals ({OverviewRows.RefusalColumns}) VALUES ($minute, $kind, $source, $reason, $at, $count)
        ON CONFLICT (minute, kind, source) DO UPDATE SET
            refused = refused + excluded.refused,
            reason = CASE WHEN excluded.at >= refusals.at THEN excluded.reason ELSE refusals.reason END,
            at = MAX(refusals.at, excluded.at)
        """;

    public Task RecordRefusalsAsync(IReadOnlyList<RefusalInfo> refusals, CancellationToken cancellationToken = default)
    {
        var rows = OverviewRows.Fold(refusals);
        return rows.Count == 0
            ? Task.CompletedTask
            : _database.WriteAsync(
                context =>
                {
                    foreach (var row in rows)
                    {
                        context.Execute(
                            RefusalUpsert,
                            ("$minute", row.Minute),
                            ("$kind", row.Kind),
                            ("$source", row.Source),
                            ("$reason", row.Reason),
                            ("$at", row.At),
                            ("$count", row.Count));
                    }
                },
                cancellationToken);
    }

    public Task<IReadOnlyList<RefusalInfo>> ListRefusalsAsync(int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<RefusalInfo>>(Query(
            $"SELECT {OverviewRows.RefusalColumns} FROM refusals ORDER BY at DESC, kind, source LIMIT $limit",
            OverviewRows.ReadRefusal,
            ("$limit", limit)));

    public Task<int> PurgeRefusalsAsync(DateTimeOffset before, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute("DELETE FROM refusals WHERE at < $before", ("$before", ToUnix(before))),
            isolated: false,
            cancellationToken);

    public Task<MinuteSeries> CountPerMinuteAsync(FleetSeries series, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var (first, from, to) = OverviewRows.Window(now);
        var rows = Query(OverviewRows.SeriesSql(series, "$from", "$to"), OverviewRows.ReadBucket, ("$from", from), ("$to", to));
        return Task.FromResult(OverviewRows.Series(first, rows));
    }

    public Task<Dictionary<string, long>> CountDevicesByStatusAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(Query("SELECT status, COUNT(*) FROM devices GROUP BY status", r => (r.GetString(0), r.GetInt64(1)))
            .ToDictionary(p => p.Item1, p => p.Item2, StringComparer.Ordinal));

    public Task<long> CountPendingOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(
            $"SELECT COUNT(*) FROM provisioning_operations WHERE status = '{OperationStatus.Pending}' AND expires_at > $now",
            r => r.GetInt64(0),
            ("$now", ToUnix(now))).Single());
}
