using System.Globalization;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// The default <see cref="IDeviceInfoProvider"/>: reads the host's network (first non-loopback interface that is up),
/// storage (the volume holding the state folder), memory (<c>/proc/meminfo</c> on Linux), OS and CPU facts.
/// </summary>
public sealed class HostDeviceInfoProvider : IDeviceInfoProvider
{
    private readonly string _statePath;

    /// <summary>Creates the provider; storage facts describe the volume of the configured state folder.</summary>
    public HostDeviceInfoProvider(IOptions<EnrollDeviceOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _statePath = options.Value.StatePath;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyDictionary<string, JsonElement>> GetMetadataAsync(CancellationToken cancellationToken = default)
    {
        var builder = new DeviceMetadataBuilder();
        AddNetwork(builder);
        AddStorage(builder);
        AddMemory(builder);
        builder.Add("os_name", OsName())
            .Add("os_version", Environment.OSVersion.Version.ToString())
            .Add("os_description", RuntimeInformation.OSDescription)
            .Add("os_architecture", RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant())
            .Add("cpu_count", Environment.ProcessorCount)
            .Add("host_name", Environment.MachineName)
            .Add("runtime_version", RuntimeInformation.FrameworkDescription);
        return ValueTask.FromResult(builder.Build());
    }

    private static void AddNetwork(DeviceMetadataBuilder builder)
    {
        try
        {
            var candidate = NetworkInterface.GetAllNetworkInterfaces()
                .Where(n => n.OperationalStatus == OperationalStatus.Up && n.NetworkInterfaceType != NetworkInterfaceType.Loopback)
                .Select(n => (Interface: n, Address: n.GetIPProperties().UnicastAddresses
                    .FirstOrDefault(a => a.Address.AddressFamily == AddressFamily.InterNetwork)?.Address))
                .FirstOrDefault(n => n.Address is not null);
            if (candidate.Interface is null)
            {
                return;
            }

            var mac = candidate.Interface.GetPhysicalAddress().GetAddressBytes();
            builder.Add("network_interface", candidate.Interface.Name)
                .Add("network_ip", candidate.Address!.ToString())
                .Add("network_mac", mac.Length == 0 ? null : string.Join(':', mac.Select(b => b.ToString("x2", CultureInfo.InvariantCulture))));
        }
        catch (NetworkInformationException)
        {
            // Some sandboxes hide interfaces; the facts are optional.
        }
    }

    private void AddStorage(DeviceMetadataBuilder builder)
    {
        try
        {
            var folder = Path.GetFullPath(_statePath);
            while (!Directory.Exists(folder) && Path.GetDirectoryName(folder) is { } parent)
            {
                folder = parent;
            }

            var drive = new DriveInfo(folder);
            builder.Add("storage_free_space", drive.AvailableFreeSpace).Add("storage_total_space", drive.TotalSize);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // Storage facts are optional.
        }
    }

    private static void AddMemory(DeviceMetadataBuilder builder)
    {
        const string meminfo = "/proc/meminfo";
        if (File.Exists(meminfo))
        {
            var values = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var line in File.ReadLines(meminfo))
            {
                var parts = line.Split(':', 2);
                if (parts.Length == 2 && long.TryParse(parts[1].Trim().Split(' ')[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kib))
                {
                    values[parts[0]] = kib * 1024;
                }
            }

            builder.Add("memory_total", values.GetValueOrDefault("MemTotal"))
                .Add("memory_free", values.GetValueOrDefault("MemAvailable"))
                .Add("memory_cached", values.GetValueOrDefault("Cached"));
            return;
        }

        builder.Add("memory_total", GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
    }

    private static string OsName()
    {
        const string osRelease = "/etc/os-release";
        if (File.Exists(osRelease))
        {
            foreach (var line in File.ReadLines(osRelease))
            {
                if (line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
                {
                    return line["PRETTY_NAME=".Length..].Trim('"');
                }
            }
        }

        return RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? "Windows"
            : RuntimeInformation.IsOSPlatform(OSPlatform.OSX) ? "macOS"
            : RuntimeInformation.IsOSPlatform(OSPlatform.Linux) ? "Linux"
            : RuntimeInformation.OSDescription;
    }
}
