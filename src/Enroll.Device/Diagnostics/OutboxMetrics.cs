using System.Diagnostics.Metrics;

namespace Enroll.Device.Diagnostics;

/// <summary>Outbox instruments (declared in <see cref="DeviceInstruments"/>): depth, bytes, oldest age and quarantine depth as gauges; sent, acknowledged, dropped and quarantined as counters.</summary>
internal sealed class OutboxMetrics
{
    public const string Depth = DeviceInstruments.OutboxDepth;
    public const string Bytes = DeviceInstruments.OutboxBytes;
    public const string OldestAge = DeviceInstruments.OutboxOldestAge;
    public const string Sent = DeviceInstruments.MessagesSent;
    public const string Acknowledged = DeviceInstruments.OutboxAcknowledged;
    public const string DroppedName = DeviceInstruments.OutboxDropped;
    public const string Quarantined = DeviceInstruments.OutboxQuarantined;
    public const string QuarantineDepth = DeviceInstruments.OutboxQuarantineDepth;

    private static readonly KeyValuePair<string, object?>[] PublishTags = [new("messaging.system", "mqtt"), new("messaging.operation.name", "publish")];

    private readonly Meter _meter;
    private readonly Counter<long> _sent;
    private readonly Counter<long> _acknowledged;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _quarantined;

    public OutboxMetrics(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(DeviceInstruments.MeterName);
        _sent = DeviceInstruments.Counter(_meter, Sent);
        _acknowledged = DeviceInstruments.Counter(_meter, Acknowledged);
        _dropped = DeviceInstruments.Counter(_meter, DroppedName);
        _quarantined = DeviceInstruments.Counter(_meter, Quarantined);
    }

    /// <summary>
    /// Publishes the outbox's depth, bytes, oldest age and quarantine depth as observable gauges, read from the outbox file
    /// when a listener collects (the rows another process stored included).
    /// </summary>
    public void Observe(Enroll.Device.DeviceOutbox outbox)
    {
        Gauge(Depth, () => outbox.GetStatistics().Depth);
        Gauge(Bytes, () => outbox.GetStatistics().Bytes);
        Gauge(OldestAge, () => outbox.GetStatistics().OldestAge?.TotalSeconds ?? 0);
        Gauge(QuarantineDepth, () => outbox.GetStatistics().Quarantined);
    }

    private void Gauge<T>(string name, Func<T> observe)
        where T : struct
    {
        var declared = DeviceInstruments.Get(name);
        _meter.CreateObservableGauge(declared.Name, observe, declared.Unit, declared.Description);
    }

    public void SentOne() => _sent.Add(1, PublishTags);

    public void AcknowledgedMany(int count) => _acknowledged.Add(count);

    public void Dropped(int count) => _dropped.Add(count);

    public void QuarantinedOne() => _quarantined.Add(1);
}
