using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Security;

/// <summary>
/// Limits failed credential attempts per client ID and per source address with token buckets: each failure takes a
/// token, tokens come back steadily, and an empty bucket answers <c>rate_limited</c> with the wait until the next token.
/// Successful devices never touch a bucket, so a brute-force burst costs legitimate devices nothing. Memory is bounded:
/// when too many keys pile up, full (idle) buckets are dropped.
/// </summary>
internal sealed class FailureRateLimiter
{
    private const int MaxKeys = 100_000;
    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private readonly TimeProvider _timeProvider;
    private readonly Limits _options;

    public FailureRateLimiter(TimeProvider timeProvider, IOptions<EnrollServerOptions> options)
        : this(timeProvider, options.Value.ClientFailureLimit, options.Value.SourceFailureLimit, options.Value.FailureWindow)
    {
    }

    /// <summary>A limiter with its own limits (the HTTP API's admin-key failures, for one).</summary>
    internal FailureRateLimiter(TimeProvider timeProvider, int clientFailureLimit, int sourceFailureLimit, TimeSpan failureWindow)
    {
        _timeProvider = timeProvider;
        _options = new Limits(clientFailureLimit, sourceFailureLimit, failureWindow);
    }

    private sealed record Limits(int ClientFailureLimit, int SourceFailureLimit, TimeSpan FailureWindow);

    /// <summary>True when the source may not try now; <paramref name="retryAfter"/> says how long to wait.</summary>
    public bool IsSourceLimited(string? source, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        return source is not null && IsLimited("source:" + source, _options.SourceFailureLimit, out retryAfter);
    }

    /// <summary>True when the client ID may not try now; <paramref name="retryAfter"/> says how long to wait.</summary>
    public bool IsClientLimited(string? clientId, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        return clientId is not null && IsLimited("client:" + clientId, _options.ClientFailureLimit, out retryAfter);
    }

    /// <summary>
    /// Reserves one failure from the client's and the source's buckets before a credential is checked, or returns false
    /// (with the wait) when either is empty. Reserving first keeps the limit exact when many checks run at once;
    /// <see cref="Refund"/> gives the reservation back when the credential turns out valid.
    /// </summary>
    public bool TryReserve(string? clientId, string? source, out TimeSpan retryAfter)
    {
        if (_buckets.Count > MaxKeys)
        {
            Prune();
        }

        var now = _timeProvider.GetUtcNow();
        var client = clientId is null ? null : _buckets.GetOrAdd("client:" + clientId, _ => new Bucket(_options.ClientFailureLimit, now));
        var origin = source is null ? null : _buckets.GetOrAdd("source:" + source, _ => new Bucket(_options.SourceFailureLimit, now));

        // Always lock the client bucket before the source bucket, so concurrent reservations cannot deadlock.
        lock (client ?? new object())
        {
            lock (origin ?? new object())
            {
                retryAfter = TimeSpan.Zero;
                if (client is not null && client.Refill(now, _options.ClientFailureLimit, _options.FailureWindow) < 1)
                {
                    retryAfter = _options.FailureWindow / _options.ClientFailureLimit * (1 - client.Tokens);
                    return false;
                }

                if (origin is not null && origin.Refill(now, _options.SourceFailureLimit, _options.FailureWindow) < 1)
                {
                    retryAfter = _options.FailureWindow / _options.SourceFailureLimit * (1 - origin.Tokens);
                    return false;
                }

                if (client is not null)
                {
                    client.Tokens -= 1;
                }

                if (origin is not null)
                {
                    origin.Tokens -= 1;
                }

                return true;
            }
        }
    }

    /// <summary>Returns a reservation made by <see cref="TryReserve"/> for a credential that was valid.</summary>
    public void Refund(string? clientId, string? source)
    {
        foreach (var (key, limit) in new[] { (clientId is null ? null : "client:" + clientId, _options.ClientFailureLimit), (source is null ? null : "source:" + source, _options.SourceFailureLimit) })
        {
            if (key is not null && _buckets.TryGetValue(key, out var bucket))
            {
                lock (bucket)
                {
                    bucket.Tokens = Math.Min(limit, bucket.Tokens + 1);
                }
            }
        }
    }

    private bool IsLimited(string key, int limit, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        if (!_buckets.TryGetValue(key, out var bucket))
        {
            return false;
        }

        lock (bucket)
        {
            var tokens = bucket.Refill(_timeProvider.GetUtcNow(), limit, _options.FailureWindow);
            if (tokens >= 1)
            {
                return false;
            }

            var perToken = _options.FailureWindow / limit;
            retryAfter = perToken * (1 - tokens);
            return true;
        }
    }

    private void Prune()
    {
        var now = _timeProvider.GetUtcNow();
        foreach (var (key, bucket) in _buckets)
        {
            lock (bucket)
            {
                if (now - bucket.Updated >= _options.FailureWindow)
                {
                    _buckets.TryRemove(key, out _);
                }
            }
        }
    }

    private sealed class Bucket(int capacity, DateTimeOffset now)
    {
        public double Tokens { get; set; } = capacity;

        public DateTimeOffset Updated { get; private set; } = now;

        public double Refill(DateTimeOffset now, int capacity, TimeSpan window)
        {
            var elapsed = now - Updated;
            if (elapsed > TimeSpan.Zero)
            {
                Tokens = Math.Min(capacity, Tokens + (elapsed / window * capacity));
                Updated = now;
            }

            return Tokens;
        }
    }
}
