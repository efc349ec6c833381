namespace Enroll.Server.Diagnostics;

/// <summary>
/// A condition that can happen thousands of times a second (a full disk, a flood of connections, wrong admin keys) is
/// logged once per <see cref="Interval"/> with the count since the last line, not once per event: the log stays readable
/// and its size bounded however hard the condition repeats.
/// </summary>
internal sealed class RepeatedCondition(TimeProvider timeProvider, TimeSpan interval)
{
    /// <summary>The default interval between two lines about one condition: 10 seconds.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(10);

    private readonly Lock _lock = new();
    private long _count;
    private long _suppressed;
    private DateTimeOffset? _lastLogged;

    public TimeSpan Interval { get; } = interval;

    /// <summary>Every occurrence so far.</summary>
    public long Count => Interlocked.Read(ref _count);

    /// <summary>
    /// Counts one occurrence; true when it should be logged now, with <paramref name="occurrences"/> the occurrences the
    /// line stands for (this one and those not logged since the last line).
    /// </summary>
    public bool Occurred(out long occurrences)
    {
        Interlocked.Increment(ref _count);
        var now = timeProvider.GetUtcNow();
        lock (_lock)
        {
            _suppressed++;
            if (_lastLogged is { } last && now - last < Interval)
            {
                occurrences = 0;
                return false;
            }

            _lastLogged = now;
            occurrences = _suppressed;
            _suppressed = 0;
            return true;
        }
    }

    /// <summary>Forgets the last line, so that the next occurrence (a new episode) is logged at once.</summary>
    public void Ended()
    {
        lock (_lock)
        {
            _lastLogged = null;
            _suppressed = 0;
        }
    }
}
