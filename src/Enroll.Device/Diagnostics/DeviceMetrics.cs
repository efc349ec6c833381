using System.Diagnostics.Metrics;

namespace Enroll.Device.Diagnostics;

/// <summary>Instrument names of the device library, OpenTelemetry style.</summary>
internal static class DeviceInstruments
{
    public const string MeterName = "Enroll.Device";
    public const string RequestAttempts = "enroll.device.request.attempts";
    public const string RequestDuration = "enroll.device.request.duration";
    public const string Registrations = "enroll.device.registrations";
}

/// <summary>The device library's metrics, created through <see cref="IMeterFactory"/>.</summary>
internal sealed class DeviceMetrics
{
    private readonly Counter<long> _attempts;
    private readonly Histogram<double> _duration;
    private readonly Counter<long> _registrations;

    public DeviceMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(DeviceInstruments.MeterName);
        _attempts = meter.CreateCounter<long>(DeviceInstruments.RequestAttempts, "{attempt}", "Requests sent to the server, retries included");
        _duration = meter.CreateHistogram<double>(DeviceInstruments.RequestDuration, "s", "Time from first attempt to answer");
        _registrations = meter.CreateCounter<long>(DeviceInstruments.Registrations, "{registration}", "Registration outcomes");
    }

    public void Attempt(string request) => _attempts.Add(1, new KeyValuePair<string, object?>("request", request));

    public void Completed(string request, string outcome, TimeSpan duration) =>
        _duration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("request", request), new KeyValuePair<string, object?>("outcome", outcome));

    public void Registration(string outcome) => _registrations.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
}
