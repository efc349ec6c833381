using System.Net.Http.Headers;
using System.Net.Http.Json;
using Enroll.Protocol.Admin;
using Enroll.Server;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Enroll.Testing;

/// <summary>
/// A real Enroll server (embedded broker, SQLite registry, HTTP API) on free loopback ports in a temporary folder,
/// stopped and deleted when disposed.
/// </summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly TempDirectory? _ownedDirectory;
    private readonly HttpClient _http;

    private TestServer(EnrollServerHost host, EnrollServerOptions options, TempDirectory? ownedDirectory, string adminKey)
    {
        Host = host;
        Options = options;
        _ownedDirectory = ownedDirectory;
        AdminKey = adminKey;
        _http = new HttpClient { BaseAddress = host.HttpEndpoint };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
    }

    public EnrollServerHost Host { get; }

    public EnrollServerOptions Options { get; }

    public string AdminKey { get; }

    public Uri MqttEndpoint => Host.MqttEndpoint;

    public Uri HttpEndpoint => Host.HttpEndpoint;

    public string DataDirectory => Host.DataDirectory;

    public int MqttPort => MqttEndpoint.Port;

    public HttpClient Http => _http;

    /// <summary>Starts a server. Pass <paramref name="dataDirectory"/> to reuse a data folder (restarts); otherwise a fresh one is made.</summary>
    public static async Task<TestServer> StartAsync(
        ITestOutputHelper? output = null,
        Action<EnrollServerOptions>? configure = null,
        string? dataDirectory = null,
        TimeProvider? timeProvider = null,
        int mqttPort = 0)
    {
        var owned = dataDirectory is null ? new TempDirectory("enroll-server") : null;
        var options = new EnrollServerOptions
        {
            DataDirectory = dataDirectory ?? owned!.Path,
            MqttPort = mqttPort,
            HttpPort = 0,
            Bind = "127.0.0.1",
        };
        configure?.Invoke(options);
        if (options.Database is not null && options.KeyEncryptionKeyFile is null)
        {
            // Servers on one database must share a key-encryption key: every test server of this run gets the same one.
            options.KeyEncryptionKeyFile = SharedKeyEncryptionKey.Value;
        }

        var host = await EnrollServerHost.StartAsync(
            options,
            logging =>
            {
                if (output is not null)
                {
                    logging.AddProvider(new XunitLoggerProvider(output, "server/"));
                }

                logging.SetMinimumLevel(LogLevel.Debug).AddFilter("Microsoft", LogLevel.Warning);
            },
            timeProvider);
        var key = (await File.ReadAllTextAsync(host.AdminKeyPath)).Trim();
        return new TestServer(host, options, owned, key);
    }

    /// <summary>Starts counting what clients publish, by topic.</summary>
    public RequestCounter CountRequests() => new(this);

    /// <summary>Creates a Provisioning Token through the HTTP API and returns it (with its secret).</summary>
    public async Task<ProvisioningTokenInfo> CreateTokenAsync(string orgId = "test-org", bool autoApprove = true, int? maxUses = null, DateTimeOffset? expiresAt = null)
    {
        using var response = await _http.PostAsJsonAsync(
            "/api/tokens",
            new CreateProvisioningTokenRequest { OrgId = orgId, AutoApprove = autoApprove, MaxUses = maxUses, ExpiresAt = expiresAt },
            AdminJsonContext.Default.CreateProvisioningTokenRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.ProvisioningTokenInfo))!;
    }

    public async Task<IReadOnlyList<ProvisioningOperationInfo>> ListOperationsAsync(string status = "all")
    {
        var list = await _http.GetFromJsonAsync($"/api/provisioning-operations?status={status}", AdminJsonContext.Default.ItemListProvisioningOperationInfo);
        return list!.Items;
    }

    public Task<ProvisioningOperationInfo> ApproveAsync(string operationId) => DecideAsync(operationId, "approve", null);

    public Task<ProvisioningOperationInfo> RejectAsync(string operationId, string reason) => DecideAsync(operationId, "reject", reason);

    private async Task<ProvisioningOperationInfo> DecideAsync(string operationId, string decision, string? reason)
    {
        using var response = await _http.PostAsJsonAsync($"/api/provisioning-operations/{operationId}/{decision}", new OperationDecisionRequest { Reason = reason }, AdminJsonContext.Default.OperationDecisionRequest);
        var body = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"{decision} {operationId}: {(int)response.StatusCode} {body}");
        }

        return System.Text.Json.JsonSerializer.Deserialize(body, AdminJsonContext.Default.ProvisioningOperationInfo)!;
    }

    public async Task<DeviceInfo> RevokeDeviceAsync(string deviceId)
    {
        using var response = await _http.PostAsync($"/api/devices/{deviceId}/revoke", null);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.DeviceInfo))!;
    }

    public async Task<DeviceInfo> GetDeviceAsync(string deviceId) =>
        (await _http.GetFromJsonAsync($"/api/devices/{deviceId}", AdminJsonContext.Default.DeviceInfo))!;

    public async Task RevokeTokenAsync(string tokenId)
    {
        using var response = await _http.PostAsync($"/api/tokens/{tokenId}/revoke", null);
        response.EnsureSuccessStatusCode();
    }

    /// <summary>How many messages the server stored (optionally of one device).</summary>
    public Task<long> CountMessagesAsync(string? deviceId = null) =>
        Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Enroll.Server.Registry.IMessageStore>(Host.Services).CountMessagesAsync(deviceId);

    /// <summary>Every stored message of a device, oldest first.</summary>
    public async Task<IReadOnlyList<Enroll.Server.IngestedMessage>> MessagesAsync(string? deviceId = null)
    {
        var registry = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Enroll.Server.Registry.IMessageStore>(Host.Services);
        var all = new List<Enroll.Server.IngestedMessage>();
        long after = 0;
        while (true)
        {
            var page = await registry.ListMessagesAsync(deviceId, after, 1000);
            if (page.Count == 0)
            {
                return all;
            }

            all.AddRange(page.Select(p => p.Message));
            after = page[^1].Sequence;
        }
    }

    public async Task<IReadOnlyList<DeviceInfo>> ListDevicesAsync()
    {
        var list = await _http.GetFromJsonAsync("/api/devices", AdminJsonContext.Default.ItemListDeviceInfo);
        return list!.Items;
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await Host.DisposeAsync();
        _ownedDirectory?.Dispose();
    }
}

/// <summary>One key-encryption key file for the test run (owner-only, in a temporary folder deleted at exit).</summary>
internal static class SharedKeyEncryptionKey
{
    private static readonly Lazy<string> File = new(Create);

    public static string Value => File.Value;

    private static string Create()
    {
        var folder = new TempDirectory("enroll-kek");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => folder.Dispose();
        var path = folder.Combine("kek");
        TestKeyEncryptionKeys.Write(path);
        return path;
    }
}

