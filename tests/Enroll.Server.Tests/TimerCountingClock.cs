using Microsoft.Extensions.Time.Testing;

namespace Enroll.Server.Tests;

/// <summary>A fake clock that counts the timers created on it: a background loop's wait is one, so a test knows it is waiting before it advances the clock.</summary>
internal sealed class TimerCountingClock(DateTimeOffset start) : FakeTimeProvider(start)
{
    private int _timers;

    public int Timers => Volatile.Read(ref _timers);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        Interlocked.Increment(ref _timers);
        return base.CreateTimer(callback, state, dueTime, period);
    }
}
