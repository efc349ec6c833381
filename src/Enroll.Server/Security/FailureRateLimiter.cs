using System.Collections.Concurrent;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Security;

/// <summary>
/// Limits failed credential attempts per client ID and per source address with token buckets that every instance on the
/// registry shares (<see cref="ICredentialFailureStore"/>): each failure takes a token, tokens come back steadily, and a key
/// whose recorded failures emptied its bucket is answered <c>rate_limited</c> with the wait until the next token.
/// <para>
/// Successful devices never touch the database. A check reserves its attempt in memory first
/// (<see cref="ReserveAsync"/>); a valid credential gives the reservation back (<see cref="Refund"/>), a refused one is
/// recorded in the store (<see cref="FailedAsync"/>), whose answer — the key's bucket after every instance's failures —
/// this instance keeps, so its later attempts are refused here without a query. At start the instance loads the buckets
/// that are not full (<see cref="LoadAsync"/>, run by <see cref="CredentialFailureSweeper"/> before the broker listens), so a restart or a new
/// instance knows every key limited until then.
/// </para>
/// <para>
/// Within one instance the limit is exact, also with many checks of one key at once: a check is refused only when the
/// recorded failures alone leave no token; when they leave tokens but the checks in flight hold them all, the check waits
/// for one of those to end (a valid one gives its token back), so concurrent valid checks are never refused.
/// </para>
/// <para>
/// Across N instances, a key limited on one instance after another instance last heard of it costs at most one more
/// checked attempt on that other instance — the attempt whose recorded failure tells it — for each attempt of the key it
/// has in flight at that moment (1 for an attacker that waits for each answer). A failure recorded past the limit is a
/// debt the key pays off before its next attempt, so over any period D at most
/// <c>limit + D × limit / window + (N − 1) × c</c> failures of one key are checked (c: the attempts of the key one
/// instance has in flight at once).
/// </para>
/// <para>
/// When the store cannot record a failure (the database is down), the instance counts it in its own bucket — the limit
/// then holds per instance, as before the registry kept counters — and logs once per interval; credentials keep being
/// checked. Memory is bounded: when too many keys pile up, keys that are full and idle are dropped.
/// </para>
/// </summary>
internal sealed partial class FailureRateLimiter
{
    private const int MaxKeys = 100_000;
    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private readonly TimeProvider _timeProvider;
    private readonly ICredentialFailureStore _store;
    private readonly ILogger _logger;
    private readonly RepeatedCondition _storeFailures;
    private readonly string _clientPrefix;
    private readonly string _sourcePrefix;
    private readonly int _clientLimit;
    private readonly int _sourceLimit;
    private readonly TimeSpan _window;

    /// <summary>The service key of the HTTP API's limiter of wrong admin keys per remote address (<see cref="ForAdminKeys"/>).</summary>
    public const string AdminKeys = "admin-keys";

    /// <summary>The prefix of the admin-key limiter's keys in the registry (<c>admin-source:{address}</c>), apart from the devices' keys.</summary>
    public const string AdminKeyPrefix = "admin-";

    public FailureRateLimiter(TimeProvider timeProvider, IOptions<EnrollServerOptions> options, ICredentialFailureStore store, ILogger<FailureRateLimiter> logger)
        : this(timeProvider, options.Value.ClientFailureLimit, options.Value.SourceFailureLimit, options.Value.FailureWindow, store, logger, keyPrefix: "")
    {
    }

    /// <summary>
    /// A limiter with its own limits (the HTTP API's admin-key failures, for one); <paramref name="keyPrefix"/> keeps its
    /// keys in the store apart from the devices' (<c>{prefix}client:{id}</c>, <c>{prefix}source:{address}</c>).
    /// </summary>
    internal FailureRateLimiter(TimeProvider timeProvider, int clientFailureLimit, int sourceFailureLimit, TimeSpan failureWindow, ICredentialFailureStore store, ILogger logger, string keyPrefix)
    {
        _timeProvider = timeProvider;
        _store = store;
        _logger = logger;
        _storeFailures = new RepeatedCondition(timeProvider, RepeatedCondition.DefaultInterval);
        _clientPrefix = keyPrefix + "client:";
        _sourcePrefix = keyPrefix + "source:";
        _clientLimit = clientFailureLimit;
        _sourceLimit = sourceFailureLimit;
        _window = failureWindow;
    }

    /// <summary>The limiter of wrong admin keys: <see cref="EnrollServerOptions.AdminKeyFailureLimit"/> per remote address and <see cref="EnrollServerOptions.FailureWindow"/>.</summary>
    public static FailureRateLimiter ForAdminKeys(IServiceProvider services)
    {
        var options = services.GetRequiredService<IOptions<EnrollServerOptions>>().Value;
        return new FailureRateLimiter(
            services.GetRequiredService<TimeProvider>(),
            options.AdminKeyFailureLimit,
            options.AdminKeyFailureLimit,
            options.FailureWindow,
            services.GetRequiredService<ICredentialFailureStore>(),
            services.GetRequiredService<ILogger<FailureRateLimiter>>(),
            AdminKeyPrefix);
    }

    /// <summary>True when the source may not try now; <paramref name="retryAfter"/> says how long to wait.</summary>
    public bool IsSourceLimited(string? source, out TimeSpan retryAfter) =>
        IsLimited(source is null ? null : _sourcePrefix + source, _sourceLimit, out retryAfter);

    /// <summary>True when the client ID may not try now; <paramref name="retryAfter"/> says how long to wait.</summary>
    public bool IsClientLimited(string? clientId, out TimeSpan retryAfter) =>
        IsLimited(clientId is null ? null : _clientPrefix + clientId, _clientLimit, out retryAfter);

    /// <summary>
    /// Reserves one attempt from the client's and the source's buckets before a credential is checked. Returns null when
    /// reserved — end it with <see cref="Refund"/> (valid) or <see cref="FailedAsync"/> (refused) — or, when the recorded
    /// failures of either key leave no token, the wait until the next one. While the checks in flight hold every token the
    /// recorded failures leave, it waits for one of them to end.
    /// </summary>
    public async ValueTask<TimeSpan?> ReserveAsync(string? clientId, string? source, CancellationToken cancellationToken)
    {
        if (_buckets.Count > MaxKeys)
        {
            Prune();
        }

        while (true)
        {
            var now = _timeProvider.GetUtcNow();
            var client = clientId is null ? null : _buckets.GetOrAdd(_clientPrefix + clientId, _ => new Bucket());
            var origin = source is null ? null : _buckets.GetOrAdd(_sourcePrefix + source, _ => new Bucket());
            Task released;

            // Always lock the client bucket before the source bucket, so concurrent reservations cannot deadlock.
            lock (client ?? new object())
            {
                lock (origin ?? new object())
                {
                    if (client is not null && client.IsLimited(now, _clientLimit, _window, out var clientWait))
                    {
                        return clientWait;
                    }

                    if (origin is not null && origin.IsLimited(now, _sourceLimit, _window, out var sourceWait))
                    {
                        return sourceWait;
                    }

                    var busy = client is not null && !client.HasFreeToken(now, _clientLimit, _window) ? client
                        : origin is not null && !origin.HasFreeToken(now, _sourceLimit, _window) ? origin
                        : null;
                    if (busy is null)
                    {
                        client?.Reserve(now);
                        origin?.Reserve(now);
                        return null;
                    }

                    released = busy.Released;
                }
            }

            try
            {
                // A reservation never ended (its check threw) is dropped after a window; waiting longer than that would wait for nothing.
                await released.WaitAsync(_window, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }
    }

    /// <summary>Ends a reservation made by <see cref="ReserveAsync"/> for a credential that was valid (or not checked): nothing is recorded.</summary>
    public void Refund(string? clientId, string? source)
    {
        Release(clientId is null ? null : _clientPrefix + clientId);
        Release(source is null ? null : _sourcePrefix + source);
    }

    /// <summary>
    /// Ends a reservation made by <see cref="ReserveAsync"/> for a credential that was refused: records the failure of both
    /// keys in the store and keeps the store's answer (every instance's failures), or counts it here when the store fails.
    /// </summary>
    public Task FailedAsync(string? clientId, string? source, CancellationToken cancellationToken) =>
        Task.WhenAll(
            RecordAsync(clientId is null ? null : _clientPrefix + clientId, _clientLimit, cancellationToken),
            RecordAsync(source is null ? null : _sourcePrefix + source, _sourceLimit, cancellationToken));

    /// <summary>Takes in the store's buckets of this limiter's keys that are not full: what other instances (or this one before a restart) recorded.</summary>
    public async Task LoadAsync(CancellationToken cancellationToken)
    {
        var now = _timeProvider.GetUtcNow();
        foreach (var prefix in new[] { _clientPrefix, _sourcePrefix })
        {
            foreach (var failures in await _store.ListCredentialFailuresAsync(prefix, now, MaxKeys / 2, cancellationToken).ConfigureAwait(false))
            {
                var bucket = _buckets.GetOrAdd(failures.Key, _ => new Bucket());
                lock (bucket)
                {
                    bucket.Learn(failures.FullAt);
                }
            }
        }
    }

    private async Task RecordAsync(string? key, int limit, CancellationToken cancellationToken)
    {
        if (key is null)
        {
            return;
        }

        var now = _timeProvider.GetUtcNow();
        DateTimeOffset? fullAt = null;
        try
        {
            fullAt = (await _store.RecordCredentialFailureAsync(key, limit, _window, now, cancellationToken).ConfigureAwait(false)).FullAt;
        }
#pragma warning disable CA1031 // any store failure: the limit falls back to this instance's own bucket, the check's answer stands
        catch (Exception ex)
#pragma warning restore CA1031
        {
            if (_storeFailures.Occurred(out var count))
            {
                LogStoreFailed(_logger, count, ex.Message);
            }
        }

        var bucket = _buckets.GetOrAdd(key, _ => new Bucket());
        lock (bucket)
        {
            bucket.Learn(fullAt ?? Bucket.AfterOneFailure(bucket.FullAt, now, limit, _window));
            bucket.Release();
        }
    }

    /// <summary>Ends one reservation of <paramref name="key"/> without a failure.</summary>
    private void Release(string? key)
    {
        if (key is not null && _buckets.TryGetValue(key, out var bucket))
        {
            lock (bucket)
            {
                bucket.Release();
            }
        }
    }

    private bool IsLimited(string? key, int limit, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        if (key is null || !_buckets.TryGetValue(key, out var bucket))
        {
            return false;
        }

        lock (bucket)
        {
            return bucket.IsLimited(_timeProvider.GetUtcNow(), limit, _window, out retryAfter);
        }
    }

    private void Prune()
    {
        var now = _timeProvider.GetUtcNow();
        foreach (var (key, bucket) in _buckets)
        {
            lock (bucket)
            {
                if (bucket.IsIdle(now, _window))
                {
                    _buckets.TryRemove(key, out _);
                }
            }
        }
    }

    [LoggerMessage(EventId = 1720, Level = LogLevel.Warning, Message = "Failed credential attempts could not be recorded in the registry ({Count} since the last line); this instance limits them on its own until it can: {Reason}")]
    private static partial void LogStoreFailed(ILogger logger, long count, string reason);

    /// <summary>
    /// One key as this instance knows it: the instant its bucket is full again after the recorded failures
    /// (<see cref="CredentialFailures.FullAt"/>, from the store's last answer) and the checks in flight, which hold a token
    /// each until they end. Accessed under its lock.
    /// </summary>
    private sealed class Bucket
    {
        private TaskCompletionSource? _released;
        private int _inFlight;
        private DateTimeOffset _lastReserved;

        public DateTimeOffset? FullAt { get; private set; }

        /// <summary>Completes when a check in flight ends (a new task after each end).</summary>
        public Task Released => (_released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        /// <summary>The instant after one more failure than <paramref name="fullAt"/> says, with the store's arithmetic.</summary>
        public static DateTimeOffset AfterOneFailure(DateTimeOffset? fullAt, DateTimeOffset now, int limit, TimeSpan window) =>
            (fullAt is { } known && known > now ? known : now) + TimeSpan.FromMilliseconds(CredentialFailures.PerTokenMilliseconds(limit, window));

        /// <summary>True when the recorded failures leave no token: <paramref name="retryAfter"/> is the wait for the next one.</summary>
        public bool IsLimited(DateTimeOffset now, int limit, TimeSpan window, out TimeSpan retryAfter)
        {
            retryAfter = TimeSpan.Zero;
            if (FullAt is not { } fullAt)
            {
                return false;
            }

            var until = new CredentialFailures("", fullAt).LimitedUntil(limit, window);
            if (until <= now)
            {
                return false;
            }

            retryAfter = until - now;
            return true;
        }

        /// <summary>True when a token is left after the recorded failures and the checks in flight.</summary>
        public bool HasFreeToken(DateTimeOffset now, int limit, TimeSpan window)
        {
            // A check ends in moments; a reservation a whole window old was never ended (the check threw) and is dropped.
            if (_inFlight > 0 && now - _lastReserved >= window)
            {
                _inFlight = 0;
            }

            var recorded = FullAt is { } fullAt ? new CredentialFailures("", fullAt).Remaining(limit, window, now) : limit;
            return recorded - _inFlight >= 1;
        }

        public void Reserve(DateTimeOffset now)
        {
            _inFlight++;
            _lastReserved = now;
        }

        /// <summary>Takes in the recorded failures the store reported; the store's instant only moves on, so the later one is right.</summary>
        public void Learn(DateTimeOffset fullAt)
        {
            if (FullAt is not { } known || fullAt > known)
            {
                FullAt = fullAt;
            }
        }

        public void Release()
        {
            if (_inFlight > 0)
            {
                _inFlight--;
            }

            var released = _released;
            _released = null;
            released?.TrySetResult();
        }

        /// <summary>True when nothing is in flight and the bucket is full again: forgetting it changes nothing.</summary>
        public bool IsIdle(DateTimeOffset now, TimeSpan window) =>
            (_inFlight == 0 || now - _lastReserved >= window) && (FullAt is not { } fullAt || fullAt <= now);
    }
}
