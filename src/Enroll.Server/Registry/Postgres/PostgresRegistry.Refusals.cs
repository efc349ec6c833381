using Enroll.Protocol.Admin;
using Enroll.Protocol.Messages;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    public async Task RecordRefusalsAsync(IReadOnlyList<RefusalInfo> refusals, CancellationToken cancellationToken = default)
    {
        var rows = OverviewRows.Fold(refusals);
        if (rows.Count == 0)
        {
            return;
        }

        // One statement for the batch: the rows are folded already (one INSERT ... ON CONFLICT may not touch a row twice),
        // and sorted, so instances writing overlapping batches at once lock the rows in one order.
        await WriteAsync(
            $"""
            INSERT INTO refusals ({OverviewRows.RefusalColumns})
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
            ON CONFLICT (minute, kind, source) DO UPDATE SET
                refused = refusals.refused + EXCLUDED.refused,
                reason = CASE WHEN EXCLUDED.at >= refusals.at THEN EXCLUDED.reason ELSE refusals.reason END,
                at = GREATEST(refusals.at, EXCLUDED.at)
            """,
            cancellationToken,
            rows.Select(r => r.Minute).ToArray(),
            rows.Select(r => r.Kind).ToArray(),
            rows.Select(r => r.Source).ToArray(),
            rows.Select(r => r.Reason).ToArray(),
            rows.Select(r => r.At).ToArray(),
            rows.Select(r => r.Count).ToArray()).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<RefusalInfo>> ListRefusalsAsync(int limit, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            $"SELECT {OverviewRows.RefusalColumns} FROM refusals ORDER BY at DESC, kind, source LIMIT $1",
            OverviewRows.ReadRefusal,
            cancellationToken,
            limit).ConfigureAwait(false);

    public Task<int> PurgeRefusalsAsync(DateTimeOffset before, CancellationToken cancellationToken = default) =>
        WriteAsync("DELETE FROM refusals WHERE at < $1", cancellationToken, ToUnix(before));

    public async Task<MinuteSeries> CountPerMinuteAsync(FleetSeries series, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var (first, from, to) = OverviewRows.Window(now);
        var rows = await ReadAsync(OverviewRows.SeriesSql(series, "$1", "$2"), OverviewRows.ReadBucket, cancellationToken, from, to).ConfigureAwait(false);
        return OverviewRows.Series(first, rows);
    }

    public async Task<Dictionary<string, long>> CountDevicesByStatusAsync(CancellationToken cancellationToken = default) =>
        (await ReadAsync("SELECT status, COUNT(*) FROM devices GROUP BY status", r => (r.GetString(0), r.GetInt64(1)), cancellationToken).ConfigureAwait(false))
            .ToDictionary(p => p.Item1, p => p.Item2, StringComparer.Ordinal);

    public async Task<long> CountPendingOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        (await ReadAsync(
            $"SELECT COUNT(*) FROM provisioning_operations WHERE status = '{OperationStatus.Pending}' AND expires_at > $1",
            r => r.GetInt64(0),
            cancellationToken,
            ToUnix(now)).ConfigureAwait(false)).Single();
}
