using System.Diagnostics.Metrics;

namespace Enroll.Device.Diagnostics;

/// <summary>Outbox instruments: depth, bytes and oldest age as gauges; sent, acknowledged, dropped and quarantined as counters.</summary>
internal sealed class OutboxMetrics
{
    public const string Depth = "enroll.device.outbox.depth";
    public const string Bytes = "enroll.device.outbox.bytes";
    public const string OldestAge = "enroll.device.outbox.oldest_age";
    public const string Sent = "enroll.device.outbox.sent";
    public const string Acknowledged = "enroll.device.outbox.acknowledged";
    public const string DroppedName = "enroll.device.outbox.dropped";
    public const string Quarantined = "enroll.device.outbox.quarantined";

    private readonly Meter _meter;
    private readonly Counter<long> _sent;
    private readonly Counter<long> _acknowledged;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _quarantined;

    public OutboxMetrics(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(DeviceInstruments.MeterName);
        _sent = _meter.CreateCounter<long>(Sent, "{message}", "Messages published");
        _acknowledged = _meter.CreateCounter<long>(Acknowledged, "{message}", "Messages acknowledged by the broker and deleted");
        _dropped = _meter.CreateCounter<long>(DroppedName, "{message}", "Messages dropped by the DropOldest overflow policy");
        _quarantined = _meter.CreateCounter<long>(Quarantined, "{message}", "Rows moved to quarantine: undecodable, refused for good by the broker, or too large for its packet limit");
    }

    /// <summary>Publishes the outbox's depth, bytes and oldest age as observable gauges.</summary>
    public void Observe(Enroll.Device.DeviceOutbox outbox)
    {
        _meter.CreateObservableGauge(Depth, () => outbox.GetStatistics().Depth, "{message}", "Messages waiting in the outbox");
        _meter.CreateObservableGauge(Bytes, () => outbox.GetStatistics().Bytes, "By", "Payload bytes waiting in the outbox");
        _meter.CreateObservableGauge(OldestAge, () => outbox.GetStatistics().OldestAge?.TotalSeconds ?? 0, "s", "Age of the oldest waiting message");
    }

    public void SentOne() => _sent.Add(1);

    public void AcknowledgedMany(int count) => _acknowledged.Add(count);

    public void Dropped(int count) => _dropped.Add(count);

    public void QuarantinedOne() => _quarantined.Add(1);
}
