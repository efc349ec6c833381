using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Enroll.Protocol.Admin;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Http;

/// <summary>
/// The admin API facing callers without the key and careless ones with it: wrong keys are limited, bodies are refused
/// before they are read, unknown fields and out-of-range numbers are 400s with a reason, and long lists come in pages.
/// </summary>
public sealed class AdminApiHardeningTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _folder = new("enroll-http");
    private readonly CountingLoggerProvider _log = new();
    private EnrollServerHost _host = null!;
    private HttpClient _admin = null!;
    private HttpClient _anonymous = null!;

    public async Task InitializeAsync()
    {
        _host = await EnrollServerHost.StartAsync(
            new EnrollServerOptions { DataDirectory = _folder.Path, MqttPort = 0, HttpPort = 0, AdminKeyFailureLimit = 10 },
            logging => logging.AddProvider(_log).AddProvider(new XunitLoggerProvider(output, "server/")).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning));
        var key = (await File.ReadAllTextAsync(_host.AdminKeyPath)).Trim();
        _admin = new HttpClient { BaseAddress = _host.HttpEndpoint };
        _admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        _anonymous = new HttpClient { BaseAddress = _host.HttpEndpoint };
        _anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "wrong-key");
    }

    public async Task DisposeAsync()
    {
        _admin.Dispose();
        _anonymous.Dispose();
        await _host.DisposeAsync();
        _folder.Dispose();
    }

    [Fact]
    public async Task WrongAdminKeys_AfterTheAllowance_Are429WithRetryAfter_AndLoggedOncePerInterval()
    {
        var statuses = new Dictionary<HttpStatusCode, int>();
        RetryConditionHeaderValue? retryAfter = null;
        for (var n = 0; n < 300; n++)
        {
            using var response = await _anonymous.GetAsync("/api/devices");
            statuses[response.StatusCode] = statuses.GetValueOrDefault(response.StatusCode) + 1;
            retryAfter ??= response.StatusCode == HttpStatusCode.TooManyRequests ? response.Headers.RetryAfter : null;
        }

        output.WriteLine(string.Join(", ", statuses.Select(s => $"{(int)s.Key}={s.Value}")));
        Assert.InRange(statuses.GetValueOrDefault(HttpStatusCode.Unauthorized), 10, 12);
        Assert.Equal(300, statuses.GetValueOrDefault(HttpStatusCode.Unauthorized) + statuses.GetValueOrDefault(HttpStatusCode.TooManyRequests));
        Assert.NotNull(retryAfter?.Delta);
        Assert.InRange(retryAfter!.Delta!.Value, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60));
        // One line for the 401s and one for the 429s within the interval, not one per request.
        Assert.InRange(_log.Count(22) + _log.Count(210), 1, 3);
    }

    [Fact]
    public async Task Unauthorized_BodyTellsHowToAuthenticate_WithoutTheDataFolder()
    {
        using var response = await _anonymous.GetAsync("/api/tokens");
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("Authorization: Bearer", body, StringComparison.Ordinal);
        Assert.DoesNotContain(_folder.Path, body, StringComparison.Ordinal);
        Assert.DoesNotContain("admin.key", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnauthenticatedHugePost_IsRefusedBeforeItsBodyIsSent()
    {
        // Headers announce 29 MB and no body follows: a server that reads (binds) the body before checking the key waits
        // for it; one that checks the key first answers at once.
        var answer = await RawPostAsync("/api/tokens", "Bearer wrong-key", 29 * 1024 * 1024);
        Assert.StartsWith("HTTP/1.1 401", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AuthenticatedPostAboveTheBodyLimit_Is413BeforeItsBodyIsSent()
    {
        var key = (await File.ReadAllTextAsync(_host.AdminKeyPath)).Trim();
        var answer = await RawPostAsync("/api/tokens", "Bearer " + key, 29 * 1024 * 1024);
        Assert.StartsWith("HTTP/1.1 413", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateToken_WithAnUnknownField_Is400NamingIt()
    {
        using var response = await PostJsonAsync("/api/tokens", """{"org_id":"acme","auto_aprove":true}""");
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("unknown field auto_aprove", body, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"org_id":"acme","registration_token_lifetime_seconds":9223372036854775807}""", "registration_token_lifetime_seconds must be 3600 (1 hour) to 315360000 (3650 days)")]
    [InlineData("""{"org_id":"acme","registration_token_lifetime_seconds":60}""", "registration_token_lifetime_seconds must be 3600")]
    [InlineData("""{"org_id":"acme","max_uses":99999999999}""", "not valid JSON of the expected shape at $.max_uses")]
    public async Task CreateToken_WithANumberOutOfRange_Is400SayingTheRange(string json, string expected)
    {
        using var response = await PostJsonAsync("/api/tokens", json);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ListDevices_ComesInPages_FollowingTheLinkHeader()
    {
        var registry = _host.Services.GetRequiredService<IDeviceStore>();
        var start = DateTimeOffset.UnixEpoch.AddYears(56);
        for (var n = 0; n < 7; n++)
        {
            await registry.RegisterDeviceAsync(new RegisterDeviceCommand { OrgId = "acme", ClientId = $"client-{n}", NewDeviceId = $"dev-{n}", Now = start.AddSeconds(n % 3) });
        }

        var seen = new List<string>();
        var next = "/api/devices?limit=3";
        var pages = 0;
        while (next is not null && pages++ < 10)
        {
            using var response = await _admin.GetAsync(next);
            response.EnsureSuccessStatusCode();
            var page = JsonSerializer.Deserialize(await response.Content.ReadAsStringAsync(), AdminJsonContext.Default.ItemListDeviceInfo)!;
            seen.AddRange(page.Items.Select(d => d.DeviceId));
            next = response.Headers.TryGetValues("Link", out var links) ? links.Single().Split('>')[0].TrimStart('<') : null;
        }

        Assert.Equal(Enumerable.Range(0, 7).Select(n => $"dev-{n}").Order(), seen.Order());
        Assert.Equal(7, seen.Distinct().Count());
        Assert.Equal(3, pages);
    }

    [Theory]
    [InlineData("/api/devices?limit=5000")]
    [InlineData("/api/messages?limit=100000")]
    [InlineData("/api/messages?limit=abc")]
    public async Task List_WithALimitAboveThePage_Is400SayingTheMaximum(string url)
    {
        using var response = await _admin.GetAsync(url);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("limit must be 1 to 1000", body, StringComparison.Ordinal);
    }

    private async Task<HttpResponseMessage> PostJsonAsync(string path, string json)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        return await _admin.PostAsync(path, content);
    }

    /// <summary>Sends only the headers of a POST announcing <paramref name="contentLength"/> bytes and returns the status line that comes back within 5 s.</summary>
    private async Task<string> RawPostAsync(string path, string authorization, long contentLength)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(_host.HttpEndpoint.Host, _host.HttpEndpoint.Port);
        var stream = client.GetStream();
        var head = $"POST {path} HTTP/1.1\r\nHost: {_host.HttpEndpoint.Authority}\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {contentLength}\r\n\r\n{{\"org_id\":";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var buffer = new byte[4096];
        try
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            return Encoding.ASCII.GetString(buffer, 0, read);
        }
        catch (OperationCanceledException)
        {
            return "no answer within 5 s: the server waits for the body";
        }
    }
}
