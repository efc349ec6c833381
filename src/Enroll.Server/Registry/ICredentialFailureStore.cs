using System.Data.Common;

namespace Enroll.Server.Registry;

/// <summary>
/// The failed-credential counters aggregate: one token bucket per key (<c>client:{id}</c>, <c>source:{address}</c>,
/// <c>admin-source:{address}</c>), shared by every instance on the database, so the rate limits hold across instances and
/// restarts. A bucket is kept as the one instant it is full again (<see cref="CredentialFailures.FullAt"/>): a failure
/// takes one token of <c>window / limit</c>, that is it moves the instant <c>window / limit</c> later (from now when the
/// bucket is full), and tokens come back as time passes it. The store does this arithmetic atomically in the database, so
/// failures recorded at once by many instances are all counted. A key without a row is full.
/// </summary>
internal interface ICredentialFailureStore
{
    /// <summary>
    /// Records one failed credential of <paramref name="key"/> at <paramref name="at"/>, in one atomic statement: the
    /// bucket's full-again instant becomes <c>max(full_at, at) + perToken</c>, where <c>perToken</c> is
    /// <paramref name="window"/> / <paramref name="limit"/>. A failure past the limit is counted too (tokens below zero
    /// are a debt the key pays off before it may try again). Returns the bucket as it is after the failure.
    /// </summary>
    Task<CredentialFailures> RecordCredentialFailureAsync(string key, int limit, TimeSpan window, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>The bucket of <paramref name="key"/>, or null when it is full at <paramref name="at"/> (no failure left to pay off).</summary>
    Task<CredentialFailures?> FindCredentialFailuresAsync(string key, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// At most <paramref name="limit"/> buckets whose key starts with <paramref name="keyPrefix"/> that are not full at
    /// <paramref name="at"/>, the latest full-again first: what an instance loads when it starts.
    /// </summary>
    Task<IReadOnlyList<CredentialFailures>> ListCredentialFailuresAsync(string keyPrefix, DateTimeOffset at, int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes every bucket that is full at <paramref name="at"/> (a deleted bucket and a full one mean the same), keeping
    /// the table as small as the keys with failures to pay off; returns how many. The server runs it periodically
    /// (<see cref="Security.CredentialFailureSweeper"/>, once a minute).
    /// </summary>
    Task<int> PurgeCredentialFailuresAsync(DateTimeOffset at, CancellationToken cancellationToken = default);
}

/// <summary>A key's failure bucket: the instant it is full again. How many tokens are left depends on the limit it is read with.</summary>
internal sealed record CredentialFailures(string Key, DateTimeOffset FullAt)
{
    /// <summary>What one failure costs in time with <paramref name="limit"/> failures per <paramref name="window"/>, in whole milliseconds (at least one).</summary>
    public static long PerTokenMilliseconds(int limit, TimeSpan window) =>
        Math.Max(1, (long)window.TotalMilliseconds / Math.Max(1, limit));

    /// <summary>Tokens left at <paramref name="at"/> (at most <paramref name="limit"/>, below zero while a debt is paid off).</summary>
    public double Remaining(int limit, TimeSpan window, DateTimeOffset at) =>
        FullAt <= at ? limit : limit - ((FullAt - at).TotalMilliseconds / PerTokenMilliseconds(limit, window));

    /// <summary>The instant the key may try again (one whole token back); at or before now when it may try now.</summary>
    public DateTimeOffset LimitedUntil(int limit, TimeSpan window) =>
        FullAt - TimeSpan.FromMilliseconds(PerTokenMilliseconds(limit, window) * (limit - 1L));

    /// <summary>key, full_at (Unix milliseconds), as both stores select them.</summary>
    public static CredentialFailures Read(DbDataReader r) => new(r.GetString(0), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(1)));

    /// <summary>True when the key may not try at <paramref name="at"/>.</summary>
    public bool IsLimited(int limit, TimeSpan window, DateTimeOffset at) => LimitedUntil(limit, window) > at;
}
