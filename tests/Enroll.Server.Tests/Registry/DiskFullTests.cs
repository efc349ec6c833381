using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Registry;

/// <summary>
/// The registry's disk fills up (a real, small tmpfs for the data folder): registrations are answered <c>unavailable</c>
/// with <c>retry_after_seconds</c>, device messages are refused unstored with a PUBACK reason, the HTTP API answers 503
/// with Retry-After, the log says so once per interval, and once space returns everything works and the registry is intact.
/// </summary>
public sealed class DiskFullTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _folder = new("enroll-diskfull");
    private string _mount = null!;
    private bool _mounted;

    public async Task InitializeAsync()
    {
        Assert.True(Environment.UserName == "root", "this test mounts a small tmpfs for the data folder and must run as root (as .ci/run does)");
        _mount = _folder.Combine("tmpfs");
        Directory.CreateDirectory(_mount);
        await RunAsync("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", _mount);
        _mounted = true;
    }

    public async Task DisposeAsync()
    {
        if (_mounted)
        {
            await RunAsync("umount", "-l", _mount);
        }

        _folder.Dispose();
    }

    [Fact]
    public async Task FullRegistryDisk_IsAnsweredUnavailable_AndRecoversWhenSpaceReturns()
    {
        var log = new CountingLoggerProvider();
        var data = Path.Combine(_mount, "data");
        var options = new EnrollServerOptions { DataDirectory = data, MqttPort = 0, HttpPort = 0, DiskFullRetryAfter = TimeSpan.FromSeconds(30) };
        var host = await EnrollServerHost.StartAsync(options, logging => logging.AddProvider(log).AddProvider(new XunitLoggerProvider(output, "server/")).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning));
        await using var running = host;
        using var http = new HttpClient { BaseAddress = host.HttpEndpoint };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(host.AdminKeyPath)).Trim());
        var token = await CreateTokenAsync(http);
        string deviceId, accessToken;
        await using (var registering = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "full-dev"))
        {
            await registering.SubscribeAsync(EnrollTopics.ClientResponses("full-dev"));
            using var first = await RegisterAsync(registering, "full-dev", token);
            deviceId = first.RootElement.GetProperty("device_id").GetString()!;
            accessToken = first.RootElement.GetProperty("jwt_token").GetString()!;
        }

        await using var device = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "full-dev", deviceId, accessToken);
        await using var client = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "full-1");
        await client.SubscribeAsync(EnrollTopics.ClientResponses("full-1"));

        var filler = Path.Combine(_mount, "filler");
        Fill(filler);

        // Registrations: unavailable, with the configured wait, and nothing half-stored.
        for (var n = 0; n < 10; n++)
        {
            using var answer = await RegisterAsync(client, "full-1", token, n);
            var error = answer.RootElement.GetProperty("error");
            Assert.Equal(ErrorCodes.Unavailable, error.GetProperty("code").GetString());
            Assert.Equal(30, error.GetProperty("retry_after_seconds").GetInt32());
        }

        // Device messages: refused, unstored, with a reason the device can act on (it resends later).
        for (var n = 0; n < 10; n++)
        {
            var ack = await device.PublishAsync(EnrollTopics.DeviceMessages(deviceId, "telemetry"), $$"""{"n":{{n}}}""");
            Assert.Equal(MQTTnet.MqttClientPublishReasonCode.UnspecifiedError, ack.ReasonCode);
            Assert.Contains("disk is full", ack.ReasonString, StringComparison.Ordinal);
        }

        // The HTTP API: 503 with Retry-After and a JSON body.
        using (var refused = await http.PostAsync("/api/tokens", new StringContent("""{"org_id":"acme"}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal(TimeSpan.FromSeconds(30), refused.Headers.RetryAfter?.Delta);
            Assert.Contains("disk is full", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal("ok\n", await http.GetStringAsync("/healthz"));
        Assert.Equal(1, log.Count(200));
        Assert.DoesNotContain(log.Lines, l => l.HasException);

        // Space returns: everything works again, and the registry holds exactly what was acknowledged.
        File.Delete(filler);
        using (var again = await RegisterAsync(client, "full-1", token, 99))
        {
            Assert.False(again.RootElement.TryGetProperty("error", out _), again.RootElement.ToString());
        }

        var stored = await device.PublishAsync(EnrollTopics.DeviceMessages(deviceId, "telemetry"), """{"n":100}""");
        Assert.Equal(MQTTnet.MqttClientPublishReasonCode.Success, stored.ReasonCode);
        Assert.Equal(1, log.Count(201));
        await host.StopAsync();
        await host.DisposeAsync();

        await using var check = new SqliteConnection($"Data Source={Path.Combine(data, "registry.db")};Pooling=false");
        await check.OpenAsync();
        await using var integrity = check.CreateCommand();
        integrity.CommandText = "PRAGMA integrity_check";
        Assert.Equal("ok", (string?)await integrity.ExecuteScalarAsync());
        await using var count = check.CreateCommand();
        count.CommandText = "SELECT COUNT(*) FROM messages";
        Assert.Equal(1L, (long)(await count.ExecuteScalarAsync())!);
    }

    private static void Fill(string path)
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        var block = new byte[64 * 1024];
        try
        {
            while (true)
            {
                file.Write(block);
                file.Flush();
            }
        }
        catch (IOException)
        {
            // ENOSPC: the disk is full.
        }

        // Whatever a smaller write can still take.
        try
        {
            while (true)
            {
                file.Write(block, 0, 512);
                file.Flush();
            }
        }
        catch (IOException)
        {
        }
    }

    private static async Task<string> CreateTokenAsync(HttpClient http)
    {
        using var response = await http.PostAsync("/api/tokens", new StringContent("""{"org_id":"acme","auto_approve":true}""", Encoding.UTF8, "application/json"));
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("token").GetString()!;
    }

    private static async Task<JsonDocument> RegisterAsync(RawMqttClient client, string clientId, string token, int n = 0)
    {
        await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"{{clientId}}","provisioning_token":"{{token}}","request_id":"r{{n}}"}""", EnrollTopics.ClientResponses(clientId), [(byte)n]);
        return JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(TimeSpan.FromSeconds(15))));
    }

    private static async Task RunAsync(string command, params string[] arguments)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"{command} {string.Join(' ', arguments)} failed: {error}");
    }
}
