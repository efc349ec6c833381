using System.Diagnostics.Metrics;
using Enroll.Protocol.Admin;
using Enroll.Server.Diagnostics;
using Enroll.Server.Refusals;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Tests.Refusals;

/// <summary>The refusal log's queue, its supervised writer and its sweeper, against a real SQLite registry on a fake clock.</summary>
public sealed class RefusalLogTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 30, TimeSpan.Zero);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly TempDirectory _folder = new("enroll-refusals");
    private readonly TimerCountingClock _clock = new(T0);
    private readonly MeterFactory _meters = new();
    private SqliteRegistry _registry = null!;
    private RefusalLog _log = null!;

    public Task InitializeAsync()
    {
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
        _log = new RefusalLog(_clock, new ServerMetrics(_meters), NullLogger<RefusalLog>.Instance);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _registry.DisposeAsync();
        _meters.Dispose();
        _folder.Dispose();
    }

    [Fact]
    public void Record_WhenTheQueueIsFull_DropsAndCounts_WithoutWaiting()
    {
        using var dropped = new CounterListener(ServerInstruments.RefusalsDropped, _meters);
        for (var i = 0; i < RefusalLog.Capacity + 7; i++)
        {
            _log.Record(RefusalLog.RateLimited, "register", "10.0.0.1");
        }

        Assert.Equal(7, _log.Dropped);
        Assert.Equal(7, dropped.Total);
        Assert.Equal(RefusalLog.Capacity, _log.Reader.Count);
    }

    [Fact]
    public async Task Writer_DrainsAStormIntoOneRowPerMinuteKindAndSource()
    {
        using var writer = new RefusalWriter(_log, _registry, _clock, NullLogger<RefusalWriter>.Instance);
        await writer.StartAsync(CancellationToken.None);
        for (var i = 0; i < 2000; i++)
        {
            _log.Record(RefusalLog.TokenRefused, "provisioning token: unknown", "guesser");
        }

        _log.Record(RefusalLog.RateLimited, "register", "guesser");
        var rows = await Eventually.ReturnsAsync(() => _registry.ListRefusalsAsync(10), r => r.Sum(x => x.Count) == 2001, Patience, "the storm written");
        Assert.Equal(2, rows.Count);
        Assert.Equal(2000, Assert.Single(rows, r => r.Kind == RefusalLog.TokenRefused).Count);
        Assert.Equal(0, _log.Dropped);
        await writer.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Writer_WhenTheStoreFails_DropsThatBatchCounted_AndWritesAgainAfterItsBackoff()
    {
        var flaky = new FailingOnce(_registry);
        using var writer = new RefusalWriter(_log, flaky, _clock, NullLogger<RefusalWriter>.Instance);
        await writer.StartAsync(CancellationToken.None);
        _log.Record(RefusalLog.CredentialRefused, "lost", "first");
        await Eventually.ReturnsAsync(() => Task.FromResult(_log.Dropped), d => d == 1, Patience, "the failed batch counted");

        // The writer waits its backoff on the clock before it reads again.
        _log.Record(RefusalLog.CredentialRefused, "kept", "second");
        await Eventually.ReturnsAsync(() => Task.FromResult(_clock.Timers), t => t >= 1, Patience, "the writer backing off");
        Assert.Empty(await _registry.ListRefusalsAsync(10));
        _clock.Advance(RefusalWriter.FirstBackoff);
        var rows = await Eventually.ReturnsAsync(() => _registry.ListRefusalsAsync(10), r => r.Count == 1, Patience, "the next refusal written");
        Assert.Equal("second", rows[0].Source);
        Assert.Equal(1, _log.Dropped);
        await writer.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Sweeper_EveryHour_DeletesRowsOlderThanTheRetention()
    {
        await _registry.RecordRefusalsAsync(
        [
            new RefusalInfo { Kind = RefusalLog.RateLimited, Source = "old", At = T0.AddHours(-23.5) },
            new RefusalInfo { Kind = RefusalLog.RateLimited, Source = "recent", At = T0.AddHours(-1) },
        ]);
        using var sweeper = new RefusalSweeper(_registry, Options.Create(new EnrollServerOptions { RefusalRetention = TimeSpan.FromHours(24) }), _clock, NullLogger<RefusalSweeper>.Instance);
        await sweeper.StartAsync(CancellationToken.None);
        await Eventually.ReturnsAsync(() => Task.FromResult(_clock.Timers), t => t >= 1, Patience, "the sweeper waiting");
        Assert.Equal(2, (await _registry.ListRefusalsAsync(10)).Count);

        _clock.Advance(RefusalSweeper.Interval);
        var rows = await Eventually.ReturnsAsync(() => _registry.ListRefusalsAsync(10), r => r.Count == 1, Patience, "the old row deleted");
        Assert.Equal("recent", rows[0].Source);
        await sweeper.StopAsync(CancellationToken.None);
    }

    /// <summary>A registry whose first refusal write fails, as a database that went away for a moment.</summary>
    private sealed class FailingOnce(IRefusalStore inner) : IRefusalStore
    {
        private int _calls;

        public Task RecordRefusalsAsync(IReadOnlyList<RefusalInfo> refusals, CancellationToken cancellationToken = default) =>
            Interlocked.Increment(ref _calls) == 1 ? throw new InvalidOperationException("database unreachable") : inner.RecordRefusalsAsync(refusals, cancellationToken);

        public Task<IReadOnlyList<RefusalInfo>> ListRefusalsAsync(int limit, CancellationToken cancellationToken = default) => inner.ListRefusalsAsync(limit, cancellationToken);

        public Task<int> PurgeRefusalsAsync(DateTimeOffset before, CancellationToken cancellationToken = default) => inner.PurgeRefusalsAsync(before, cancellationToken);

        public Task<MinuteSeries> CountPerMinuteAsync(FleetSeries series, DateTimeOffset now, CancellationToken cancellationToken = default) => inner.CountPerMinuteAsync(series, now, cancellationToken);

        public Task<Dictionary<string, long>> CountDevicesByStatusAsync(CancellationToken cancellationToken = default) => inner.CountDevicesByStatusAsync(cancellationToken);

        public Task<long> CountPendingOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) => inner.CountPendingOperationsAsync(now, cancellationToken);
    }

    private sealed class MeterFactory : IMeterFactory
    {
        private readonly List<Meter> _meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options.Name, options.Version, options.Tags, this);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose() => _meters.ForEach(m => m.Dispose());
    }

    /// <summary>Sums one counter of the meters this test's factory made.</summary>
    private sealed class CounterListener : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _total;

        public CounterListener(string name, IMeterFactory factory)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Name == name && ReferenceEquals(instrument.Meter.Scope, factory))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _total, value));
            _listener.Start();
        }

        public long Total => Interlocked.Read(ref _total);

        public void Dispose() => _listener.Dispose();
    }
}
