using System.Diagnostics.Metrics;
using Enroll.Device.Diagnostics;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Device.Tests.Status;

/// <summary>The device library's outbox gauges read a real outbox, and every declared instrument is documented.</summary>
public sealed class DeviceOutboxGaugeTests
{
    [Fact]
    public async Task OutboxGauges_ReportTheRealOutbox_DepthBytesOldestAgeAndQuarantine()
    {
        using var state = new TempDirectory();
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero));
        await using var device = DeviceHarness.Create(new Uri("mqtt://127.0.0.1:1"), "gauges-1", state.Path, "unused", timeProvider: clock, replace: s => s.AddMetrics());
        var factory = device.Services.GetRequiredService<IMeterFactory>();
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Scope == factory && instrument.Meter.Name == DeviceInstruments.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => values[instrument.Name] = value);
        listener.SetMeasurementEventCallback<double>((instrument, value, _, _) => values[instrument.Name] = value);
        listener.Start();

        var outbox = device.Outbox;
        listener.RecordObservableInstruments();
        Assert.Equal(0, values[DeviceInstruments.OutboxDepth]);
        Assert.Equal(0, values[DeviceInstruments.OutboxQuarantineDepth]);

        for (var i = 0; i < 3; i++)
        {
            await outbox.SendAsync("telemetry", new byte[100 + i]);
        }

        clock.Advance(TimeSpan.FromSeconds(42));
        listener.RecordObservableInstruments();
        Assert.Equal(3, values[DeviceInstruments.OutboxDepth]);
        Assert.Equal(outbox.GetStatistics().Bytes, values[DeviceInstruments.OutboxBytes]);
        Assert.True(values[DeviceInstruments.OutboxBytes] > 0);
        Assert.Equal(42, values[DeviceInstruments.OutboxOldestAge], 3);
        Assert.Equal(0, values[DeviceInstruments.OutboxQuarantineDepth]);

        var first = Assert.Single(outbox.Store.ReadAfter(0, 1));
        await outbox.Store.QuarantineAsync(first, "a test moved it", clock.GetUtcNow(), CancellationToken.None);
        listener.RecordObservableInstruments();
        Assert.Equal(2, values[DeviceInstruments.OutboxDepth]);
        Assert.Equal(1, values[DeviceInstruments.OutboxQuarantineDepth]);
    }

    [Fact]
    public void Docs_ListEveryDeclaredDeviceInstrument()
    {
        var doc = File.ReadAllText(MosquittoBroker.RepositoryFile("docs/observability.md"));
        var missing = DeviceInstruments.All.Where(i => !doc.Contains($"| `{i.Name}` |", StringComparison.Ordinal)).Select(i => i.Name).ToList();
        Assert.True(missing.Count == 0, "docs/observability.md lacks: " + string.Join(", ", missing));
        Assert.All(DeviceInstruments.All.Where(i => i.Kind == InstrumentKind.Gauge), i => Assert.Contains($"| `{i.Name}` | gauge | `{i.Unit}` |", doc, StringComparison.Ordinal));
    }
}
