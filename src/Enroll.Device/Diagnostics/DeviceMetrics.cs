using System.Diagnostics.Metrics;

namespace Enroll.Device.Diagnostics;

/// <summary>What kind of instrument a declared metric is.</summary>
internal enum InstrumentKind
{
    Counter,
    Histogram,
    Gauge,
}

/// <summary>One metric as declared: its name, kind, unit, description and attributes (docs/observability.md is generated from these).</summary>
internal sealed record InstrumentDeclaration(string Name, InstrumentKind Kind, string Unit, string Description, string Attributes);

/// <summary>
/// Every instrument of the device library, declared once: <c>messaging.*</c> where the OpenTelemetry semantic
/// conventions name it, <c>enroll.device.*</c> otherwise.
/// </summary>
internal static class DeviceInstruments
{
    public const string MeterName = "Enroll.Device";
    public const string RequestAttempts = "enroll.device.request.attempts";
    public const string RequestDuration = "enroll.device.request.duration";
    public const string Registrations = "enroll.device.registrations";
    public const string TokenRefreshes = "enroll.device.token.refreshes";
    public const string CommandsHandled = "enroll.device.commands.handled";
    public const string OutboxDepth = "enroll.device.outbox.depth";
    public const string OutboxBytes = "enroll.device.outbox.bytes";
    public const string OutboxOldestAge = "enroll.device.outbox.oldest_age";
    public const string MessagesSent = "messaging.client.sent.messages";
    public const string OutboxAcknowledged = "enroll.device.outbox.acknowledged";
    public const string OutboxDropped = "enroll.device.outbox.dropped";
    public const string OutboxQuarantined = "enroll.device.outbox.quarantined";
    public const string OutboxQuarantineDepth = "enroll.device.outbox.quarantine.depth";

    public static readonly IReadOnlyList<InstrumentDeclaration> All =
    [
        new(RequestAttempts, InstrumentKind.Counter, "{attempt}", "Requests sent to the server, retries included, by request (registration attempts are request=registration)", "request"),
        new(RequestDuration, InstrumentKind.Histogram, "s", "Time from first attempt to answer", "request, outcome"),
        new(Registrations, InstrumentKind.Counter, "{registration}", "Registration outcomes (registered, failed, skipped)", "outcome"),
        new(TokenRefreshes, InstrumentKind.Counter, "{refresh}", "Registration Token refreshes, by outcome (success, timeout, error)", "outcome"),
        new(CommandsHandled, InstrumentKind.Counter, "{command}", "Commands run by the device's handlers, by status (succeeded, failed, rejected)", "status"),
        new(OutboxDepth, InstrumentKind.Gauge, "{message}", "Messages waiting in the outbox", ""),
        new(OutboxBytes, InstrumentKind.Gauge, "By", "Payload bytes waiting in the outbox", ""),
        new(OutboxOldestAge, InstrumentKind.Gauge, "s", "Age of the oldest waiting message", ""),
        new(MessagesSent, InstrumentKind.Counter, "{message}", "Outbox messages published to the broker", "messaging.system, messaging.operation.name"),
        new(OutboxAcknowledged, InstrumentKind.Counter, "{message}", "Messages acknowledged by the broker and deleted", ""),
        new(OutboxDropped, InstrumentKind.Counter, "{message}", "Messages dropped by the DropOldest overflow policy", ""),
        new(OutboxQuarantined, InstrumentKind.Counter, "{message}", "Rows moved to quarantine: undecodable, refused for good by the broker, or too large for its packet limit", ""),
        new(OutboxQuarantineDepth, InstrumentKind.Gauge, "{message}", "Rows held in the outbox's quarantine table now (kept with their reason, never sent)", ""),
    ];

    /// <summary>The declaration of <paramref name="name"/>; throws when it is not declared.</summary>
    public static InstrumentDeclaration Get(string name) => All.Single(i => i.Name == name);

    /// <summary>A counter declared in <see cref="All"/>.</summary>
    public static Counter<long> Counter(Meter meter, string name)
    {
        var declared = Get(name);
        return meter.CreateCounter<long>(declared.Name, declared.Unit, declared.Description);
    }
}

/// <summary>The device library's metrics, created through <see cref="IMeterFactory"/>.</summary>
internal sealed class DeviceMetrics
{
    private readonly Counter<long> _attempts;
    private readonly Histogram<double> _duration;
    private readonly Counter<long> _registrations;
    private readonly Counter<long> _tokenRefreshes;
    private readonly Counter<long> _commands;

    public DeviceMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(DeviceInstruments.MeterName);
        _attempts = DeviceInstruments.Counter(meter, DeviceInstruments.RequestAttempts);
        var duration = DeviceInstruments.Get(DeviceInstruments.RequestDuration);
        _duration = meter.CreateHistogram<double>(duration.Name, duration.Unit, duration.Description);
        _registrations = DeviceInstruments.Counter(meter, DeviceInstruments.Registrations);
        _tokenRefreshes = DeviceInstruments.Counter(meter, DeviceInstruments.TokenRefreshes);
        _commands = DeviceInstruments.Counter(meter, DeviceInstruments.CommandsHandled);
    }

    public void Attempt(string request) => _attempts.Add(1, new KeyValuePair<string, object?>("request", request));

    public void Completed(string request, string outcome, TimeSpan duration)
    {
        _duration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("request", request), new KeyValuePair<string, object?>("outcome", outcome));
        if (request == Protocol.Requests.EnrollRequests.TokensRefresh.Name)
        {
            _tokenRefreshes.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
        }
    }

    public void Registration(string outcome) => _registrations.Add(1, new KeyValuePair<string, object?>("outcome", outcome));

    /// <summary>A command's handler finished with <paramref name="status"/> (succeeded, failed, rejected).</summary>
    public void CommandHandled(string status) => _commands.Add(1, new KeyValuePair<string, object?>("status", status));
}
