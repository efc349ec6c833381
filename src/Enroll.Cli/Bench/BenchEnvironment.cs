using System.Net.Http.Headers;
using System.Net.Http.Json;
using Enroll.Device;
using Enroll.Protocol.Admin;
using Enroll.Server;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Enroll.Cli.Bench;

/// <summary>
/// What the benchmarks run against: an Enroll server embedded in this process (free loopback ports, data in a scratch
/// folder), or an external one; plus helpers to create tokens and devices through the real API.
/// </summary>
internal sealed class BenchEnvironment : IAsyncDisposable
{
    private readonly EnrollServerHost? _host;
    private readonly HttpClient _http;

    private BenchEnvironment(EnrollServerHost? host, Uri mqtt, Uri http, string adminKey, string scratch)
    {
        _host = host;
        Mqtt = mqtt;
        Scratch = scratch;
        _http = new HttpClient { BaseAddress = http };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
    }

    public Uri Mqtt { get; }

    /// <summary>A folder on the disk under test for state files; deleted on dispose.</summary>
    public string Scratch { get; }

    public EnrollServerHost? Host => _host;

    /// <summary>The server's operator API, signed in with the admin key (base address: the HTTP endpoint).</summary>
    public HttpClient Admin => _http;

    public static async Task<BenchEnvironment> EmbeddedAsync(string scratchParent, Action<EnrollServerOptions>? configure = null)
    {
        var scratch = Path.Combine(Path.GetFullPath(scratchParent), $"enroll-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        var options = new EnrollServerOptions
        {
            DataDirectory = Path.Combine(scratch, "server"),
            MqttPort = 0,
            HttpPort = 0,
        };
        configure?.Invoke(options);
        if (options.Database is not null && options.KeyEncryptionKeyFile is null && Environment.GetEnvironmentVariable("ENROLL_KEY_ENCRYPTION_KEY") is null)
        {
            // A PostgreSQL registry keeps the server keys sealed under a key-encryption key the operator gives; the
            // benchmark's server gets a fresh one in its scratch folder.
            options.KeyEncryptionKeyFile = Path.Combine(scratch, "key-encryption.key");
            await File.WriteAllTextAsync(options.KeyEncryptionKeyFile, ServerProcess.NewKeyEncryptionKey());
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(options.KeyEncryptionKeyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
        }

        var host = await EnrollServerHost.StartAsync(options, logging => logging.SetMinimumLevel(LogLevel.Warning).AddFilter("Microsoft", LogLevel.Error).AddSimpleConsole());
        var key = (await File.ReadAllTextAsync(host.AdminKeyPath)).Trim();
        return new BenchEnvironment(host, host.MqttEndpoint, host.HttpEndpoint, key, scratch);
    }

    public static BenchEnvironment External(Uri mqtt, Uri http, string adminKey, string scratchParent)
    {
        var scratch = Path.Combine(Path.GetFullPath(scratchParent), $"enroll-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        return new BenchEnvironment(null, mqtt, http, adminKey, scratch);
    }

    public async Task<string> CreateTokenAsync(bool autoApprove = true)
    {
        using var response = await _http.PostAsJsonAsync("/api/tokens", new CreateProvisioningTokenRequest { OrgId = "bench", AutoApprove = autoApprove }, AdminJsonContext.Default.CreateProvisioningTokenRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.ProvisioningTokenInfo))!.Token!;
    }

    /// <summary>A device wired as an application would wire it, with its own state folder under the scratch folder.</summary>
    public ServiceProvider Device(string clientId, string? token, Action<EnrollDeviceOptions>? configure = null)
    {
        var services = new ServiceCollection();
        services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true));
        services.AddEnrollDevice(o =>
        {
            o.Broker = Mqtt;
            o.ClientId = clientId;
            o.ProvisioningToken = token;
            o.StatePath = Path.Combine(Scratch, clientId);
            o.SendMetadata = false;
            configure?.Invoke(o);
        });
        return services.BuildServiceProvider();
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        if (_host is not null)
        {
            await _host.DisposeAsync();
        }

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(Scratch, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
