using Microsoft.Extensions.Time.Testing;

namespace Enroll.Server.Tests;

/// <summary>A fake clock that counts the timers created on it: a background loop's wait is one, so a test knows it is waiting before it advances the clock.</summary>
internal sealed class TimerCountingClock(DateTimeOffset start) : FakeTimeProvider(start)
{
    private int _timers;

    public int Timers => Volatile.Read(ref _timers);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        // Counted once the timer exists: a test that sees the count and advances the clock must find the timer's due
        // time already set, or the advance happens before it and the timer waits its whole period after it.
        var timer = base.CreateTimer(callback, state, dueTime, period);
        Interlocked.Increment(ref _timers);
        return timer;
    }
}
