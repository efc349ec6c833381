using System.Diagnostics.Metrics;

namespace Enroll.Device.Diagnostics;

/// <summary>Used when the host registered no <see cref="IMeterFactory"/>: instruments exist but nobody listens.</summary>
internal sealed class NullMeterFactory : IMeterFactory
{
    public Meter Create(MeterOptions options) => new(options);

    public void Dispose()
    {
    }
}
