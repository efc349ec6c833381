using System.Text.Json.Nodes;
using Enroll.Shared.Storage;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string TwinSelect =
        "SELECT d.device_id, t.desired, t.desired_version, t.reported, t.reported_version, t.updated_at FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id WHERE d.device_id = $id";

    public Task<TwinRecord?> GetTwinAsync(string deviceId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(TwinSelect, TwinRecord.Read, ("$id", deviceId)).FirstOrDefault());

    public Task<DesiredPatchOutcome> PatchDesiredAsync(string deviceId, JsonObject patch, long? ifVersion, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        // The one writer serialises patches: the read, the checks and the write below see no other write in between.
        _database.WriteAsync(
            context =>
            {
                if (QueryOne(context, TwinSelect, TwinRecord.Read, ("$id", deviceId)) is not { } twin)
                {
                    return DesiredPatchOutcome.NoDevice;
                }

                if (ifVersion is { } expected && expected != twin.DesiredVersion)
                {
                    return new DesiredPatchOutcome(DesiredPatchResult.VersionMismatch, twin.DesiredVersion);
                }

                var (document, refusal) = TwinRecord.Merge(twin.Desired, patch);
                if (document is null)
                {
                    return new DesiredPatchOutcome(DesiredPatchResult.Refused, twin.DesiredVersion, Reason: refusal);
                }

                var version = twin.DesiredVersion + 1;
                StoreDesiredVersion(context, twin, document, version, patch, at);
                return new DesiredPatchOutcome(DesiredPatchResult.Applied, version, document);
            },
            cancellationToken);

    public async Task<FleetPatchOutcome> PatchDesiredWhereAsync(TwinFilter filter, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var touched = new List<FleetPatched>();
        var refused = 0;
        string? firstRefusal = null;
        var after = "";
        while (true)
        {
            // One write per batch: the one writer serialises it with single-device patches, as PatchDesiredAsync is.
            // The batch's results are taken only after its commit (a write that throws is rolled back, and so is not counted).
            var batch = await _database.WriteAsync(
                context =>
                {
                    var patched = new List<FleetPatched>();
                    var refusedHere = 0;
                    string? reason = null;
                    var rows = new List<(TwinRecord Twin, string? Metadata)>();
                    using (var reader = context.Command(
                        """
                        SELECT d.device_id, t.desired, t.desired_version, t.reported, t.reported_version, t.updated_at, d.metadata
                        FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id
                        WHERE d.org_id = $org AND d.status = $active AND d.device_id > $after
                        ORDER BY d.device_id LIMIT $limit
                        """,
                        ("$org", filter.OrgId),
                        ("$active", DeviceStatuses.Active),
                        ("$after", after),
                        ("$limit", TwinFleet.BatchSize)).ExecuteReader())
                    {
                        while (reader.Read())
                        {
                            rows.Add((TwinRecord.Read(reader), reader.IsDBNull(6) ? null : reader.GetString(6)));
                        }
                    }

                    foreach (var (twin, metadata) in rows.Where(r => filter.Matches(r.Metadata, r.Twin.Reported)))
                    {
                        var (document, refusal) = TwinRecord.Merge(twin.Desired, patch);
                        if (document is null)
                        {
                            refusedHere++;
                            reason ??= refusal;
                            continue;
                        }

                        var version = twin.DesiredVersion + 1;
                        StoreDesiredVersion(context, twin, document, version, patch, at);
                        patched.Add(new FleetPatched(twin.DeviceId, version));
                    }

                    return (Scanned: rows.Count, Last: rows.Count == 0 ? after : rows[^1].Twin.DeviceId, Patched: patched, Refused: refusedHere, Reason: reason);
                },
                cancellationToken).ConfigureAwait(false);
            touched.AddRange(batch.Patched);
            refused += batch.Refused;
            firstRefusal ??= batch.Reason;
            if (batch.Scanned < TwinFleet.BatchSize)
            {
                return new FleetPatchOutcome(touched, refused, firstRefusal);
            }

            after = batch.Last;
        }
    }

    public Task<DesiredSince?> DesiredSinceAsync(string deviceId, long version, CancellationToken cancellationToken = default)
    {
        // The history is read only up to the version the twin read saw: a patch committed in between is not half in the
        // answer, and a prune in between makes the patches fall short, so the answer is that twin's whole document.
        if (Query(TwinSelect, TwinRecord.Read, ("$id", deviceId)).FirstOrDefault() is not { } twin)
        {
            return Task.FromResult<DesiredSince?>(null);
        }

        var patches = version < twin.DesiredVersion
            ? Query(
                "SELECT version, patch, created_at FROM twin_desired_patches WHERE device_id = $id AND version > $since AND version <= $version ORDER BY version",
                DesiredPatchRecord.Read,
                ("$id", deviceId),
                ("$since", version),
                ("$version", twin.DesiredVersion))
            : [];
        return Task.FromResult<DesiredSince?>(DesiredSince.From(twin, version, patches));
    }

    public Task<ReportedPatchOutcome> PatchReportedAsync(string deviceId, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                if (QueryOne(context, TwinSelect, TwinRecord.Read, ("$id", deviceId)) is not { } twin)
                {
                    return ReportedPatchOutcome.NoDevice;
                }

                var (document, refusal) = TwinRecord.Merge(twin.Reported, patch);
                if (document is null)
                {
                    return new ReportedPatchOutcome(ReportedPatchResult.Refused, twin.ReportedVersion, Reason: refusal);
                }

                var version = twin.ReportedVersion + 1;
                StoreTwin(context, twin with { Reported = document, ReportedVersion = version, UpdatedAt = at });
                return new ReportedPatchOutcome(ReportedPatchResult.Applied, version, document);
            },
            cancellationToken);

    public Task<int> PruneDesiredHistoryAsync(DateTimeOffset olderThan, int keepPerDevice, CancellationToken cancellationToken = default) =>
        // A device's versions are consecutive, so its newest keepPerDevice patches are those above desired_version - keepPerDevice.
        _database.WriteAsync(
            context => context.Execute(
                """
                DELETE FROM twin_desired_patches
                WHERE created_at < $before
                  AND version <= (SELECT t.desired_version FROM twins t WHERE t.device_id = twin_desired_patches.device_id) - $keep
                """,
                ("$before", ToUnix(olderThan)),
                ("$keep", Math.Max(0, keepPerDevice))),
            isolated: false,
            cancellationToken);

    /// <summary>Stores <paramref name="document"/> as the desired twin at <paramref name="version"/> and <paramref name="patch"/> in its history.</summary>
    private static void StoreDesiredVersion(SqliteWriteContext context, TwinRecord twin, string document, long version, JsonObject patch, DateTimeOffset at)
    {
        StoreTwin(context, twin with { Desired = document, DesiredVersion = version, UpdatedAt = at });
        context.Execute(
            "INSERT INTO twin_desired_patches (device_id, version, patch, created_at) VALUES ($id, $version, $patch, $at)",
            ("$id", twin.DeviceId),
            ("$version", version),
            ("$patch", patch.ToJsonString()),
            ("$at", ToUnix(at)));
    }

    private static void StoreTwin(SqliteWriteContext context, TwinRecord twin) =>
        context.Execute(
            """
            INSERT INTO twins (device_id, desired, desired_version, reported, reported_version, updated_at)
            VALUES ($id, $desired, $desiredVersion, $reported, $reportedVersion, $at)
            ON CONFLICT (device_id) DO UPDATE SET
                desired = excluded.desired, desired_version = excluded.desired_version,
                reported = excluded.reported, reported_version = excluded.reported_version, updated_at = excluded.updated_at
            """,
            ("$id", twin.DeviceId),
            ("$desired", twin.Desired),
            ("$desiredVersion", twin.DesiredVersion),
            ("$reported", twin.Reported),
            ("$reportedVersion", twin.ReportedVersion),
            ("$at", ToUnix(twin.UpdatedAt)));
}
