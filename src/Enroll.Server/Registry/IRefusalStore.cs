using Enroll.Protocol.Admin;

namespace Enroll.Server.Registry;

/// <summary>The per-minute series of the fleet overview, each counted from the registry's own rows.</summary>
internal enum FleetSeries
{
    /// <summary>Registration Tokens issued by a registration (first or again), not by a refresh.</summary>
    Registrations,

    /// <summary>Provisioning operations decided approved (by an operator or auto-approve), by the minute of the decision.</summary>
    Approvals,

    /// <summary>Device messages stored, by the minute they were received.</summary>
    Messages,
}

/// <summary>
/// Recent refusals (rate-limited sources, refused tokens and credentials) and the per-minute counts of the fleet overview
/// (issue 15). Refusals of one kind and source within one minute are one row with a count, so a storm of refusals is a
/// bounded number of rows; the counts are read from the registry's own rows, so every instance on one database shows the
/// same fleet numbers.
/// </summary>
internal interface IRefusalStore
{
    /// <summary>
    /// Adds <paramref name="refusals"/> to the log: each is folded into the row of its kind, source and minute (of
    /// <see cref="RefusalInfo.At"/>), whose count grows by <see cref="RefusalInfo.Count"/>, whose instant is the latest and
    /// whose reason the last one given.
    /// </summary>
    Task RecordRefusalsAsync(IReadOnlyList<RefusalInfo> refusals, CancellationToken cancellationToken = default);

    /// <summary>At most <paramref name="limit"/> rows of the log, the latest first.</summary>
    Task<IReadOnlyList<RefusalInfo>> ListRefusalsAsync(int limit, CancellationToken cancellationToken = default);

    /// <summary>Deletes the rows whose latest refusal is before <paramref name="before"/>; returns how many.</summary>
    Task<int> PurgeRefusalsAsync(DateTimeOffset before, CancellationToken cancellationToken = default);

    /// <summary>
    /// <paramref name="series"/> over the hour up to <paramref name="now"/>: <see cref="OverviewRows.Buckets"/> buckets of a
    /// minute, oldest first, the last one the minute <paramref name="now"/> is in (one grouped query).
    /// </summary>
    Task<MinuteSeries> CountPerMinuteAsync(FleetSeries series, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Devices by status (<c>active</c>, <c>revoked</c>, ...); a status no device has is absent.</summary>
    Task<Dictionary<string, long>> CountDevicesByStatusAsync(CancellationToken cancellationToken = default);

    /// <summary>Provisioning operations waiting for a decision at <paramref name="now"/> (pending and not expired).</summary>
    Task<long> CountPendingOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default);
}
