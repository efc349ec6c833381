using System.Text.Json.Nodes;
using Npgsql;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private const string TwinSelect =
        "SELECT d.device_id, t.desired, t.desired_version, t.reported, t.reported_version, t.updated_at FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id WHERE d.device_id = $1";

    public async Task<TwinRecord?> GetTwinAsync(string deviceId, CancellationToken cancellationToken = default) =>
        (await ReadAsync(TwinSelect, TwinRecord.Read, cancellationToken, deviceId).ConfigureAwait(false)).FirstOrDefault();

    public Task<DesiredPatchOutcome> PatchDesiredAsync(string deviceId, JsonObject patch, long? ifVersion, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                if (await LockTwinAsync(connection, transaction, deviceId, cancellationToken).ConfigureAwait(false) is not { } twin)
                {
                    return (DesiredPatchOutcome.NoDevice, End.Rollback);
                }

                if (ifVersion is { } expected && expected != twin.DesiredVersion)
                {
                    return (new DesiredPatchOutcome(DesiredPatchResult.VersionMismatch, twin.DesiredVersion), End.Rollback);
                }

                var (document, refusal) = TwinRecord.Merge(twin.Desired, patch);
                if (document is null)
                {
                    return (new DesiredPatchOutcome(DesiredPatchResult.Refused, twin.DesiredVersion, Reason: refusal), End.Rollback);
                }

                var version = twin.DesiredVersion + 1;
                await StoreDesiredVersionAsync(connection, transaction, deviceId, document, version, patch, at, cancellationToken).ConfigureAwait(false);
                return (new DesiredPatchOutcome(DesiredPatchResult.Applied, version, document), End.Commit);
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
            // One transaction per batch; each device's twin is locked (in Device ID order, so two walks never deadlock) as a
            // single-device patch locks it, and the reported condition is checked on the locked row.
            var batch = await TransactAsync(
                async (connection, transaction) =>
                {
                    var patched = new List<FleetPatched>();
                    var refusedHere = 0;
                    string? reason = null;
                    var devices = await QueryAsync(
                        connection,
                        transaction,
                        """
                        SELECT d.device_id, t.desired, t.desired_version, t.reported, t.reported_version, t.updated_at, d.metadata
                        FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id
                        WHERE d.org_id = $1 AND d.status = $2 AND d.device_id > $3
                        ORDER BY d.device_id LIMIT $4
                        """,
                        r => (Twin: TwinRecord.Read(r), Metadata: r.IsDBNull(6) ? null : r.GetString(6)),
                        cancellationToken,
                        filter.OrgId,
                        DeviceStatuses.Active,
                        after,
                        TwinFleet.BatchSize).ConfigureAwait(false);
                    foreach (var (seen, metadata) in devices.Where(d => filter.Matches(d.Metadata, d.Twin.Reported)))
                    {
                        // Locked now, the reported document may have changed since the read: it must still match.
                        var deviceId = seen.DeviceId;
                        if (await LockTwinAsync(connection, transaction, deviceId, cancellationToken).ConfigureAwait(false) is not { } twin
                            || !filter.Matches(metadata, twin.Reported))
                        {
                            continue;
                        }

                        var (document, refusal) = TwinRecord.Merge(twin.Desired, patch);
                        if (document is null)
                        {
                            refusedHere++;
                            reason ??= refusal;
                            continue;
                        }

                        var version = twin.DesiredVersion + 1;
                        await StoreDesiredVersionAsync(connection, transaction, deviceId, document, version, patch, at, cancellationToken).ConfigureAwait(false);
                        patched.Add(new FleetPatched(deviceId, version));
                    }

                    var last = devices.Count == 0 ? after : devices[^1].Twin.DeviceId;
                    return ((Scanned: devices.Count, Last: last, Patched: patched, Refused: refusedHere, Reason: reason), End.Commit);
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

    public async Task<DesiredSince?> DesiredSinceAsync(string deviceId, long version, CancellationToken cancellationToken = default)
    {
        // The history is read only up to the version the twin read saw: a patch committed in between is not half in the
        // answer, and a prune in between makes the patches fall short, so the answer is that twin's whole document.
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        if (await QueryOneAsync(connection, null, TwinSelect, TwinRecord.Read, cancellationToken, deviceId).ConfigureAwait(false) is not { } twin)
        {
            return null;
        }

        var patches = version < twin.DesiredVersion
            ? await QueryAsync(
                connection,
                null,
                "SELECT version, patch, created_at FROM twin_desired_patches WHERE device_id = $1 AND version > $2 AND version <= $3 ORDER BY version",
                DesiredPatchRecord.Read,
                cancellationToken,
                deviceId,
                version,
                twin.DesiredVersion).ConfigureAwait(false)
            : [];
        return DesiredSince.From(twin, version, patches);
    }

    public Task<ReportedPatchOutcome> PatchReportedAsync(string deviceId, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                if (await LockTwinAsync(connection, transaction, deviceId, cancellationToken).ConfigureAwait(false) is not { } twin)
                {
                    return (ReportedPatchOutcome.NoDevice, End.Rollback);
                }

                var (document, refusal) = TwinRecord.Merge(twin.Reported, patch);
                if (document is null)
                {
                    return (new ReportedPatchOutcome(ReportedPatchResult.Refused, twin.ReportedVersion, Reason: refusal), End.Rollback);
                }

                var version = twin.ReportedVersion + 1;
                await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE twins SET reported = $2, reported_version = $3, updated_at = $4 WHERE device_id = $1",
                    cancellationToken,
                    deviceId,
                    document,
                    version,
                    ToUnix(at)).ConfigureAwait(false);
                return (new ReportedPatchOutcome(ReportedPatchResult.Applied, version, document), End.Commit);
            },
            cancellationToken);

    public Task<int> PruneDesiredHistoryAsync(DateTimeOffset olderThan, int keepPerDevice, CancellationToken cancellationToken = default) =>
        // A device's versions are consecutive, so its newest keepPerDevice patches are those above desired_version - keepPerDevice.
        WriteAsync(
            """
            DELETE FROM twin_desired_patches p USING twins t
            WHERE t.device_id = p.device_id AND p.created_at < $1 AND p.version <= t.desired_version - $2
            """,
            cancellationToken,
            ToUnix(olderThan),
            (long)Math.Max(0, keepPerDevice));

    /// <summary>
    /// The device's twin row, locked until the transaction ends (<c>FOR UPDATE</c>), created empty first when the device
    /// has none (<c>ON CONFLICT DO NOTHING</c>: a concurrent first patch's insert is waited for, not duplicated); null when
    /// the device does not exist. Rolled back with the transaction, so a refused first patch leaves no row.
    /// </summary>
    private static async Task<TwinRecord?> LockTwinAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string deviceId, CancellationToken cancellationToken)
    {
        await ExecuteAsync(
            connection,
            transaction,
            "INSERT INTO twins (device_id, desired, desired_version, reported, reported_version) SELECT device_id, '{}', 0, '{}', 0 FROM devices WHERE device_id = $1 ON CONFLICT (device_id) DO NOTHING",
            cancellationToken,
            deviceId).ConfigureAwait(false);
        return await QueryOneAsync(
            connection,
            transaction,
            "SELECT device_id, desired, desired_version, reported, reported_version, updated_at FROM twins WHERE device_id = $1 FOR UPDATE",
            TwinRecord.Read,
            cancellationToken,
            deviceId).ConfigureAwait(false);
    }

    /// <summary>Stores <paramref name="document"/> as the desired twin at <paramref name="version"/> and <paramref name="patch"/> in its history.</summary>
    private static async Task StoreDesiredVersionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string deviceId, string document, long version, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await ExecuteAsync(
            connection,
            transaction,
            "UPDATE twins SET desired = $2, desired_version = $3, updated_at = $4 WHERE device_id = $1",
            cancellationToken,
            deviceId,
            document,
            version,
            ToUnix(at)).ConfigureAwait(false);
        await ExecuteAsync(
            connection,
            transaction,
            "INSERT INTO twin_desired_patches (device_id, version, patch, created_at) VALUES ($1, $2, $3, $4)",
            cancellationToken,
            deviceId,
            version,
            patch.ToJsonString(),
            ToUnix(at)).ConfigureAwait(false);
    }
}
