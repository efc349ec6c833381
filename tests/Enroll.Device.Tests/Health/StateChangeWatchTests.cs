using Enroll.Device.State;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Device.Tests.Health;

/// <summary>
/// The watch that wakes an idle loop when another process wrote a state file: it calls back once per moved version,
/// never while nothing changes, and a version it cannot read wakes the loop instead of stopping the watch.
/// </summary>
/// <remarks>
/// The watch reads the version and then calls back on the same loop, so once a tick's read is seen, every call back of
/// the ticks before it has happened: each assertion on the wakes follows one more tick.
/// </remarks>
public sealed class StateChangeWatchTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private readonly FakeTimeProvider _time = new();
    private int _reads;
    private int _wakes;

    [Fact]
    public async Task Wakes_at_the_first_tick_then_only_when_the_version_moved()
    {
        long version = 7;
        using var stop = new CancellationTokenSource();
        var watch = StateChangeWatch.RunAsync(() => Read(() => Volatile.Read(ref version)), Wake, Interval, _time, stop.Token);

        await TicksAsync(2);
        Assert.Equal(1, Volatile.Read(ref _wakes));

        await TicksAsync(5);
        Assert.Equal(1, Volatile.Read(ref _wakes));

        Volatile.Write(ref version, 8);
        await TicksAsync(2);
        Assert.Equal(2, Volatile.Read(ref _wakes));
        await TicksAsync(3);
        Assert.Equal(2, Volatile.Read(ref _wakes));

        await stop.CancelAsync();
        await watch.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_version_that_cannot_be_read_wakes_the_loop_and_the_watch_goes_on()
    {
        using var stop = new CancellationTokenSource();
        // The first two reads fail (the file is locked), then the version is 3 from then on.
        var watch = StateChangeWatch.RunAsync(
            () => Read(() => Volatile.Read(ref _reads) <= 2 ? throw new IOException("database is locked") : 3),
            Wake,
            Interval,
            _time,
            stop.Token);

        await TicksAsync(3);
        Assert.True(Volatile.Read(ref _wakes) >= 2);

        // The first good read after the failures wakes once more (the version is new to the watch); then nothing moves.
        await TicksAsync(1);
        Assert.Equal(3, Volatile.Read(ref _wakes));
        await TicksAsync(3);
        Assert.Equal(3, Volatile.Read(ref _wakes));
        Assert.False(watch.IsCompleted);

        await stop.CancelAsync();
        await watch.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_closed_state_file_ends_the_watch_quietly()
    {
        var watch = StateChangeWatch.RunAsync(() => Read(() => throw new ObjectDisposedException("outbox")), Wake, Interval, _time, CancellationToken.None);

        await TicksAsync(1);

        await watch.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, Volatile.Read(ref _wakes));
    }

    private long Read(Func<long> version)
    {
        Interlocked.Increment(ref _reads);
        return version();
    }

    private void Wake() => Interlocked.Increment(ref _wakes);

    /// <summary>Advances <paramref name="count"/> intervals, each time until the watch has read the version.</summary>
    private async Task TicksAsync(int count)
    {
        for (var i = 0; i < count; i++)
        {
            var before = Volatile.Read(ref _reads);
            _time.Advance(Interval);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (Volatile.Read(ref _reads) == before)
            {
                Assert.True(DateTime.UtcNow < deadline, "the watch did not read the version after a tick");
                await Task.Delay(5);
            }
        }
    }
}
