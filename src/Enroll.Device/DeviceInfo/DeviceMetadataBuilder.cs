using System.Text.Json;
using Enroll.Device.State;

namespace Enroll.Device;

/// <summary>Builds a metadata dictionary from plain values, for <see cref="IDeviceInfoProvider"/> implementations.</summary>
public sealed class DeviceMetadataBuilder
{
    private readonly Dictionary<string, JsonElement> _values = new(StringComparer.Ordinal);

    /// <summary>Adds a text fact; null values are skipped.</summary>
    public DeviceMetadataBuilder Add(string key, string? value)
    {
        if (value is not null)
        {
            _values[key] = JsonSerializer.SerializeToElement(value, MetadataJsonContext.Default.String);
        }

        return this;
    }

    /// <summary>Adds a whole-number fact; null values are skipped.</summary>
    public DeviceMetadataBuilder Add(string key, long? value)
    {
        if (value is { } v)
        {
            _values[key] = JsonSerializer.SerializeToElement(v, MetadataJsonContext.Default.Int64);
        }

        return this;
    }

    /// <summary>Adds a yes/no fact.</summary>
    public DeviceMetadataBuilder Add(string key, bool value)
    {
        _values[key] = JsonSerializer.SerializeToElement(value, MetadataJsonContext.Default.Boolean);
        return this;
    }

    /// <summary>Returns the collected facts.</summary>
    public IReadOnlyDictionary<string, JsonElement> Build() => new Dictionary<string, JsonElement>(_values, StringComparer.Ordinal);
}
