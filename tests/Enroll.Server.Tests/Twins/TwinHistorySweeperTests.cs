using System.Text.Json.Nodes;
using Enroll.Server.Registry;
using Enroll.Server.Twins;
using Enroll.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Enroll.Server.Tests.Twins;

/// <summary>The desired-history sweep against a real SQLite registry, on a fake clock.</summary>
public sealed class TwinHistorySweeperTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly TempDirectory _folder = new("enroll-twin-sweep");
    private readonly TimerCountingClock _clock = new(T0);
    private SqliteRegistry _registry = null!;
    private string _device = null!;

    public async Task InitializeAsync()
    {
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
        var outcome = await _registry.RegisterDeviceAsync(new RegisterDeviceCommand { OrgId = "acme", ClientId = "sweep-1", NewDeviceId = "dev-sweep-1", Now = T0 });
        _device = outcome.Device!.DeviceId;
    }

    public async Task DisposeAsync()
    {
        await _registry.DisposeAsync();
        _folder.Dispose();
    }

    private async Task PatchTimesAsync(int count)
    {
        for (var i = 0; i < count; i++)
        {
            await _registry.PatchDesiredAsync(_device, new JsonObject { ["n"] = i }, null, _clock.GetUtcNow());
        }
    }

    private static async Task<T> AfterAsync<T>(Func<Task<T>> probe, Func<T, bool> holds, string what) =>
        await Eventually.ReturnsAsync(probe, holds, TimeSpan.FromSeconds(10), what);

    [Fact]
    public async Task Sweep_KeepsEveryPatchYoungerThanSevenDays_ThenKeepsOnlyTheNewestHundredPerDevice()
    {
        await PatchTimesAsync(TwinHistorySweeper.KeepPerDevice + 50);
        var store = new FailingPrunes(_registry, failures: 0);
        using var sweeper = new TwinHistorySweeper(store, _clock, NullLogger<TwinHistorySweeper>.Instance);
        await sweeper.StartAsync(CancellationToken.None);

        // Sweeps within the first seven days prune nothing.
        for (var sweep = 1; sweep <= 3; sweep++)
        {
            await NextSweepAsync(store, sweep, TwinHistorySweeper.Interval);
        }

        var since = await _registry.DesiredSinceAsync(_device, 0);
        Assert.False(since!.IsWholeDocument);
        Assert.Equal(150, since.Patches.Count);

        await NextSweepAsync(store, 4, TwinHistorySweeper.KeepFor);
        Assert.True((await _registry.DesiredSinceAsync(_device, 0))!.IsWholeDocument);
        var kept = await _registry.DesiredSinceAsync(_device, 150 - TwinHistorySweeper.KeepPerDevice);
        Assert.Equal(TwinHistorySweeper.KeepPerDevice, kept!.Patches.Count);
        Assert.Equal(51, kept.Patches[0].Version);
        Assert.True((await _registry.DesiredSinceAsync(_device, 49))!.IsWholeDocument);
        await sweeper.StopAsync(CancellationToken.None);
    }

    /// <summary>Waits until the sweeper waits for sweep <paramref name="sweep"/> (its timer exists), then advances by <paramref name="step"/> and waits for that sweep to end.</summary>
    private async Task NextSweepAsync(FailingPrunes store, int sweep, TimeSpan step)
    {
        await AfterAsync(() => Task.FromResult(_clock.Timers), t => t >= sweep, $"the sweeper waiting for sweep {sweep}");
        _clock.Advance(step);
        await AfterAsync(() => Task.FromResult(store.Ended), e => e >= sweep, $"sweep {sweep}");
    }

    [Fact]
    public async Task FailedSweep_IsRetriedAfterABackoff_AndTheLoopKeepsRunning()
    {
        await PatchTimesAsync(TwinHistorySweeper.KeepPerDevice + 1);
        _clock.Advance(TwinHistorySweeper.KeepFor + TimeSpan.FromMinutes(1));
        var store = new FailingPrunes(_registry, failures: 3);
        using var sweeper = new TwinHistorySweeper(store, _clock, NullLogger<TwinHistorySweeper>.Instance) { Random = () => 0 };
        await sweeper.StartAsync(CancellationToken.None);

        await NextSweepAsync(store, 1, TwinHistorySweeper.Interval);

        // Retries come after 5 s, 10 s, 20 s (10 s doubling, halved by the fixed jitter), well before the next hour.
        foreach (var (retry, sweep) in new[] { (5, 2), (10, 3), (20, 4) })
        {
            await AfterAsync(() => Task.FromResult(_clock.Timers), t => t >= sweep, $"the sweeper waiting for retry {sweep - 1}");
            _clock.Advance(TimeSpan.FromSeconds(retry) - TimeSpan.FromMilliseconds(1));
            Assert.Equal(sweep - 1, store.Calls);
            _clock.Advance(TimeSpan.FromMilliseconds(1));
            await AfterAsync(() => Task.FromResult(store.Ended), e => e >= sweep, $"retry {sweep - 1}");
        }

        Assert.Equal(4, store.Calls);
        Assert.True((await _registry.DesiredSinceAsync(_device, 0))!.IsWholeDocument);
        Assert.Equal(TwinHistorySweeper.KeepPerDevice, (await _registry.DesiredSinceAsync(_device, 1))!.Patches.Count);
        await sweeper.StopAsync(CancellationToken.None);
    }

    [Fact]
    public void RetryDelay_DoublesFromTenSecondsUpToTheInterval_SpreadOverItsUpperHalf()
    {
        using var low = new TwinHistorySweeper(_registry, _clock, NullLogger<TwinHistorySweeper>.Instance) { Random = () => 0 };
        using var high = new TwinHistorySweeper(_registry, _clock, NullLogger<TwinHistorySweeper>.Instance) { Random = () => 0.999 };

        Assert.Equal(TimeSpan.FromSeconds(5), low.RetryDelay(1));
        Assert.Equal(TimeSpan.FromSeconds(10), low.RetryDelay(2));
        Assert.Equal(TwinHistorySweeper.Interval / 2, low.RetryDelay(50));
        Assert.InRange(high.RetryDelay(1), TimeSpan.FromSeconds(9.9), TimeSpan.FromSeconds(10));
        Assert.InRange(high.RetryDelay(50), TwinHistorySweeper.Interval * 0.99, TwinHistorySweeper.Interval);
    }

    /// <summary>The real store, whose first <c>failures</c> prunes throw.</summary>
    private sealed class FailingPrunes(ITwinStore inner, int failures) : ITwinStore
    {
        private int _calls;
        private int _ended;

        /// <summary>Prunes begun.</summary>
        public int Calls => Volatile.Read(ref _calls);

        /// <summary>Prunes ended, failed or not.</summary>
        public int Ended => Volatile.Read(ref _ended);

        public async Task<int> PruneDesiredHistoryAsync(DateTimeOffset olderThan, int keepPerDevice, CancellationToken cancellationToken = default)
        {
            try
            {
                return Interlocked.Increment(ref _calls) <= failures
                    ? throw new InvalidOperationException("the registry is unavailable")
                    : await inner.PruneDesiredHistoryAsync(olderThan, keepPerDevice, cancellationToken);
            }
            finally
            {
                Interlocked.Increment(ref _ended);
            }
        }

        public Task<TwinRecord?> GetTwinAsync(string deviceId, CancellationToken cancellationToken = default) => inner.GetTwinAsync(deviceId, cancellationToken);

        public Task<DesiredPatchOutcome> PatchDesiredAsync(string deviceId, JsonObject patch, long? ifVersion, DateTimeOffset at, CancellationToken cancellationToken = default) =>
            inner.PatchDesiredAsync(deviceId, patch, ifVersion, at, cancellationToken);

        public Task<FleetPatchOutcome> PatchDesiredWhereAsync(TwinFilter filter, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken = default) =>
            inner.PatchDesiredWhereAsync(filter, patch, at, cancellationToken);

        public Task<DesiredSince?> DesiredSinceAsync(string deviceId, long version, CancellationToken cancellationToken = default) => inner.DesiredSinceAsync(deviceId, version, cancellationToken);

        public Task<ReportedPatchOutcome> PatchReportedAsync(string deviceId, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken = default) =>
            inner.PatchReportedAsync(deviceId, patch, at, cancellationToken);
    }
}
