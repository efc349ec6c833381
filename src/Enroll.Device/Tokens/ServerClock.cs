namespace Enroll.Device.Tokens;

/// <summary>
/// The server's clock as the device knows it: the local clock plus the offset measured from the last token the server
/// issued (its <c>iat</c> against the local time at receipt). Token lifetimes and renewal times are the server's, so
/// they are checked and scheduled against this clock; a device whose clock is a day off still renews on time instead of
/// registering in a loop. Timers and timestamps are the local clock's (durations do not depend on the offset).
/// </summary>
internal sealed class ServerClock : TimeProvider
{
    private readonly TimeProvider _local;
    private long _offsetTicks;

    public ServerClock(TimeProvider local)
    {
        ArgumentNullException.ThrowIfNull(local);
        _local = local;
    }

    /// <summary>The server's time minus the local time; zero while the two agree within the tolerance.</summary>
    public TimeSpan Offset
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));
        set => Interlocked.Exchange(ref _offsetTicks, value.Ticks);
    }

    /// <summary>The local clock's time.</summary>
    public DateTimeOffset LocalNow => _local.GetUtcNow();

    public override DateTimeOffset GetUtcNow() => _local.GetUtcNow() + Offset;

    public override long GetTimestamp() => _local.GetTimestamp();

    public override long TimestampFrequency => _local.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => _local.LocalTimeZone;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        _local.CreateTimer(callback, state, dueTime, period);
}
