using System.Diagnostics.Metrics;
using System.Threading.Channels;
using Enroll.Protocol.Admin;
using Enroll.Server.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Refusals;

/// <summary>
/// Where the server's refusals are told (a rate-limited request, a refused token or credential, a refused connection),
/// for the fleet overview. <see cref="Record"/> never waits and never throws: it puts the refusal in a bounded queue that
/// <see cref="RefusalWriter"/> drains into the registry in batches (folded per minute, kind and source there), and when
/// the queue is full — a storm faster than the registry takes it — the refusal is dropped and counted
/// (<c>enroll.server.refusals.dropped</c>), so a refused request is never slowed by its own record.
/// </summary>
internal sealed partial class RefusalLog
{
    /// <summary>Refusals queued at most; one more is dropped.</summary>
    public const int Capacity = 10_000;

    public const string RateLimited = "rate_limited";
    public const string TokenRefused = "token_refused";
    public const string CredentialRefused = "credential_refused";
    public const string ConnectionRefused = "connection_refused";
    public const string AccessDenied = "access_denied";
    public const string Overloaded = "overloaded";

    private readonly Channel<RefusalInfo> _queue = Channel.CreateBounded<RefusalInfo>(new BoundedChannelOptions(Capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private readonly TimeProvider _timeProvider;
    private readonly ILogger<RefusalLog> _logger;
    private readonly Counter<long> _refusals;
    private readonly Counter<long> _dropped;
    private readonly RepeatedCondition _full;
    private long _droppedTotal;

    public RefusalLog(TimeProvider timeProvider, ServerMetrics metrics, ILogger<RefusalLog> logger)
    {
        _timeProvider = timeProvider;
        _logger = logger;
        _refusals = metrics.Counter(ServerInstruments.Refusals);
        _dropped = metrics.Counter(ServerInstruments.RefusalsDropped);
        _full = new RepeatedCondition(timeProvider, RepeatedCondition.DefaultInterval);
    }

    /// <summary>What <see cref="RefusalWriter"/> drains.</summary>
    internal ChannelReader<RefusalInfo> Reader => _queue.Reader;

    /// <summary>Refusals dropped so far (queue full, or a batch the registry did not take).</summary>
    public long Dropped => Interlocked.Read(ref _droppedTotal);

    /// <summary>Records one refusal of <paramref name="kind"/> (see the constants) now; never blocks, never throws.</summary>
    public void Record(string kind, string? reason, string? source)
    {
        _refusals.Add(1, new KeyValuePair<string, object?>("kind", kind));
        var refusal = new RefusalInfo { Kind = kind, Reason = reason, Source = source, At = _timeProvider.GetUtcNow() };
        if (!_queue.Writer.TryWrite(refusal))
        {
            Drop("queue_full", 1);
            if (_full.Occurred(out var count))
            {
                LogQueueFull(_logger, count, Capacity);
            }
        }
    }

    /// <summary>Counts <paramref name="count"/> refusals that will never reach the registry.</summary>
    internal void Drop(string reason, long count)
    {
        Interlocked.Add(ref _droppedTotal, count);
        _dropped.Add(count, new KeyValuePair<string, object?>("reason", reason));
    }

    [LoggerMessage(EventId = 2100, Level = LogLevel.Warning, Message = "Refusal log: {Count} refusal(s) dropped, the queue of {Capacity} is full (the registry writes slower than refusals arrive); each is counted in enroll.server.refusals.dropped")]
    private static partial void LogQueueFull(ILogger logger, long count, int capacity);
}
