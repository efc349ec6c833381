namespace Enroll.Server.Handlers;

/// <summary>
/// Decides at the door whether a request can be answered before its sender stops waiting. The dispatcher reports every
/// request it finishes (<see cref="Served"/>), which gives the rate the server is actually sustaining; a new request
/// behind <c>queued</c> others would wait about <c>queued ÷ capacity</c>. When that is longer than the time its sender still
/// waits (its MQTT 5 Message Expiry, or <see cref="AssumedPatience"/> without one), serving it would only push the requests
/// behind it past their own deadlines: it is answered <c>unavailable</c> at once, with a <c>retry_after_seconds</c> that
/// gives it a slot of its own after the backlog, one slot per <c>1 ÷ capacity</c>, so a storm is spread over the time the
/// server needs for it instead of coming back all at once.
/// <para>
/// Both the prediction and the slots use the server's <em>capacity</em>: the highest rate it sustained over a full
/// window lately (<see cref="PeakMemory"/>), or the current rate when that is higher. Early in a storm the rate now is
/// what the workers get while the CPU sets up thousands of connections — a few requests a second for a moment — and
/// predicting with it refused nine devices in ten of a 10,000-device storm that the queue then drained in time for
/// (mean attempts 1.9), while slots spaced at it put 1,100 devices of a 9,000-device storm up to 400 s into the future,
/// past the time the server was idle again. A device that comes back too early only costs one more cheap refusal with a
/// new slot, and a request that does outwait its sender is dropped by the dispatcher unserved; one sent too far away
/// costs the whole storm its time.
/// </para>
/// </summary>
internal sealed class AdmissionControl(TimeProvider timeProvider)
{
    /// <summary>How long a sender that sets no Message Expiry is taken to wait: the device library's attempt timeout (docs/protocol.md).</summary>
    public static readonly TimeSpan AssumedPatience = TimeSpan.FromSeconds(10);

    /// <summary>The share of the sender's remaining patience the predicted wait may take (the rest is for handling and the answer's way back).</summary>
    public const double Headroom = 0.7;

    /// <summary>No backlog smaller than this is refused: the rate of a few requests says nothing.</summary>
    public const int MinimumBacklog = 64;

    /// <summary>The longest wait a device is given.</summary>
    public static readonly TimeSpan MaxRetryAfter = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long after its first request a fresh server judges nothing: the rate of its first few milliseconds says
    /// nothing (a burst of bad guesses at start-up, refused cheaply once the source's failures are recorded, read as a
    /// rate of a few hundred a second and had legitimate devices behind it told to come back later).
    /// </summary>
    public static TimeSpan FirstJudgement => TimeSpan.FromTicks(BucketTicks);

    /// <summary>How long the highest rate sustained over a full window stands as the server's capacity.</summary>
    public static readonly TimeSpan PeakMemory = TimeSpan.FromMinutes(10);

    private const int Buckets = 20;
    private static readonly long BucketTicks = TimeSpan.FromMilliseconds(250).Ticks;

    private readonly long[] _counts = new long[Buckets];
    private readonly long[] _stamps = new long[Buckets];
    private readonly Lock _lock = new();
    private long _firstServed = long.MinValue;
    private DateTimeOffset? _startedAt;
    private DateTimeOffset _nextSlot = DateTimeOffset.MinValue;
    private double _peakRate;
    private long _peakBucket = long.MinValue;
    private long _lastBucket = long.MinValue;

    /// <summary>Requests refused at the door so far.</summary>
    public long Refused { get; private set; }

    /// <summary>One request finished (answered, refused or dropped by the dispatcher).</summary>
    public void Served()
    {
        var now = timeProvider.GetUtcNow();
        var bucket = now.UtcTicks / BucketTicks;
        lock (_lock)
        {
            _startedAt ??= now;
            if (SumWindow(bucket) == 0)
            {
                // Nothing in the last five seconds: work starts again, and the rate is measured from here.
                _firstServed = bucket;
            }

            var slot = (int)(bucket % Buckets);
            if (_stamps[slot] != bucket)
            {
                NotePeak(bucket);
                _stamps[slot] = bucket;
                _counts[slot] = 0;
            }

            _counts[slot]++;
        }
    }

    /// <summary>Requests per second finished over the last five seconds (or since the first, when that is sooner); 0 when none.</summary>
    public double SustainedRate()
    {
        var bucket = timeProvider.GetUtcNow().UtcTicks / BucketTicks;
        lock (_lock)
        {
            return Rate(bucket);
        }
    }

    /// <summary>
    /// The rate slots are spaced at: the highest rate sustained over a full five-second window in the last
    /// <see cref="PeakMemory"/>, or the current rate when that is higher; 0 when nothing was served.
    /// </summary>
    public double Capacity()
    {
        var bucket = timeProvider.GetUtcNow().UtcTicks / BucketTicks;
        lock (_lock)
        {
            return CapacityAt(bucket, Rate(bucket));
        }
    }

    /// <summary>
    /// True when a request with <paramref name="queued"/> others ahead of it can be answered before
    /// <paramref name="expiresAt"/> (or <see cref="AssumedPatience"/> from now); otherwise false, with the time the sender is
    /// asked to come back after.
    /// </summary>
    public bool TryAdmit(int queued, DateTimeOffset? expiresAt, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        if (queued < MinimumBacklog)
        {
            return true;
        }

        var now = timeProvider.GetUtcNow();
        var bucket = now.UtcTicks / BucketTicks;
        lock (_lock)
        {
            var rate = Rate(bucket);
            if (rate <= 0 || now - _startedAt < FirstJudgement)
            {
                // Nothing finished lately, or the server has been serving for less than a window's bucket since it
                // started: no rate to predict with. The queue's bound and the dispatcher's expiry check still hold.
                return true;
            }

            var capacity = CapacityAt(bucket, rate);
            var wait = TimeSpan.FromSeconds(queued / capacity);
            var patience = (expiresAt ?? now + AssumedPatience) - now;
            if (wait <= patience * Headroom)
            {
                return true;
            }

            var drained = now + TimeSpan.FromSeconds(queued / capacity);
            var start = _nextSlot > drained ? _nextSlot : drained;
            _nextSlot = start + TimeSpan.FromSeconds(1 / capacity);
            var slot = _nextSlot - now;
            retryAfter = slot > MaxRetryAfter ? MaxRetryAfter : slot;
            Refused++;
            return false;
        }
    }

    private double CapacityAt(long bucket, double rate)
    {
        var peak = _peakBucket != long.MinValue && bucket - _peakBucket <= PeakMemory.Ticks / BucketTicks ? _peakRate : 0;
        return Math.Max(rate, peak);
    }

    /// <summary>Called as <paramref name="bucket"/> opens: the window that just closed becomes the peak when it is the fastest full one lately.</summary>
    private void NotePeak(long bucket)
    {
        if (bucket <= _lastBucket)
        {
            return;
        }

        var closed = bucket - 1;
        _lastBucket = bucket;

        // Only a window that was busy from end to end says what the server can do; one that had a quiet start reads low.
        if (_firstServed == long.MinValue || closed - _firstServed + 1 < Buckets)
        {
            return;
        }

        var rate = Rate(closed);
        if (rate >= _peakRate || bucket - _peakBucket > PeakMemory.Ticks / BucketTicks)
        {
            _peakRate = rate;
            _peakBucket = closed;
        }
    }

    private double Rate(long bucket)
    {
        var served = SumWindow(bucket);
        if (served == 0 || _firstServed == long.MinValue)
        {
            return 0;
        }

        // The window is five seconds, or the time since work started when that is shorter (the current bucket counts
        // as a whole one, so a fresh start does not read as an enormous rate).
        var buckets = Math.Clamp(bucket - _firstServed + 1, 1, Buckets);
        return served / (buckets * TimeSpan.FromTicks(BucketTicks).TotalSeconds);
    }

    private long SumWindow(long bucket)
    {
        long served = 0;
        for (var i = 0; i < Buckets; i++)
        {
            if (_stamps[i] > bucket - Buckets && _stamps[i] <= bucket)
            {
                served += _counts[i];
            }
        }

        return served;
    }
}
