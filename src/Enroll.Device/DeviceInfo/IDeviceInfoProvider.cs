using System.Text.Json;

namespace Enroll.Device;

/// <summary>
/// Supplies the device facts sent as <c>metadata</c> with requests. Keys are prefixed by group: <c>network_ip</c>,
/// <c>storage_free_space</c>, <c>memory_total</c>, <c>os_name</c>, <c>cpu_count</c>, ...
/// </summary>
public interface IDeviceInfoProvider
{
    /// <summary>Collects the current facts.</summary>
    ValueTask<IReadOnlyDictionary<string, JsonElement>> GetMetadataAsync(CancellationToken cancellationToken = default);
}
