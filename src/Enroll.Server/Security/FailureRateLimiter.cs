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
    private readonly EnrollServerOptions _options;

    public FailureRateLimiter(TimeProvider timeProvider, IOptions<EnrollServerOptions> options)
    {
        _timeProvider = timeProvider;
        _options = options.Value;
    }

    /// <summary>True when the source may not try now; <paramref name="retryAfter"/> says how long to wait.</summary>
    public bool IsSourceLimited(string? source, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        return source is not null && IsLimited("source:" + source, _options.SourceFailureLimit, out retryAfter);
    }

    /// <summary>True when this client or source may not try now.</summary>
    public bool IsLimited(string? clientId, string? source, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        if (clientId is not null && IsLimited("client:" + clientId, _options.ClientFailureLimit, out retryAfter))
        {
            return true;
        }

        return IsSourceLimited(source, out retryAfter);
    }

    /// <summary>Takes a token from the client's and the source's buckets.</summary>
    public void RecordFailure(string? clientId, string? source)
    {
        if (_buckets.Count > MaxKeys)
        {
            Prune();
        }

        if (clientId is not null)
        {
            Take("client:" + clientId, _options.ClientFailureLimit);
        }

        if (source is not null)
        {
            Take("source:" + source, _options.SourceFailureLimit);
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

    private void Take(string key, int limit)
    {
        var now = _timeProvider.GetUtcNow();
        var bucket = _buckets.GetOrAdd(key, _ => new Bucket(limit, now));
        lock (bucket)
        {
            bucket.Refill(now, limit, _options.FailureWindow);
            bucket.Tokens = Math.Max(0, bucket.Tokens - 1);
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
