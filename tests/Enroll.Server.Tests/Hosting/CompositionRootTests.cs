using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Hosting;

/// <summary>
/// The server's composition root (<c>AddEnrollServer</c>) and the host's hooks: endpoints and middleware added from
/// outside are served over HTTP next to the API, the registry can be replaced, and the options are validated by the
/// registered validators.
/// </summary>
public sealed class CompositionRootTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-composition");

    public void Dispose() => _folder.Dispose();

    private EnrollServerOptions Options(string name) => new() { DataDirectory = _folder.Combine(name), MqttPort = 0, HttpPort = 0 };

    private void Logging(EnrollServerBuilder server) =>
        server.Logging.ClearProviders().AddProvider(new XunitLoggerProvider(output, "server/")).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning);

    [Fact]
    public async Task EndpointAndMiddleware_AddedThroughTheHook_AreServedOverHttp_AndTheApiStillNeedsTheAdminKey()
    {
        var seen = new ConcurrentQueue<string>();
        await using var host = await EnrollServerHost.StartAsync(Options("hook"), server =>
        {
            Logging(server);
            server.UseMiddleware(async (context, next) =>
            {
                seen.Enqueue(context.Request.Path);
                context.Response.Headers["X-Console"] = "seen";
                await next(context);
            });
            server.MapEndpoints(endpoints => endpoints.MapGet("/console/ping", () => TypedResults.Text("pong")));
        });
        using var http = new HttpClient { BaseAddress = host.HttpEndpoint };

        using var ping = await http.GetAsync(new Uri("/console/ping", UriKind.Relative));
        using var health = await http.GetAsync(new Uri("/healthz", UriKind.Relative));
        using var api = await http.GetAsync(new Uri("/api/devices", UriKind.Relative));

        Assert.Equal(HttpStatusCode.OK, ping.StatusCode);
        Assert.Equal("pong", await ping.Content.ReadAsStringAsync());
        Assert.Equal("seen", Assert.Single(ping.Headers.GetValues("X-Console")));
        Assert.Equal("seen", Assert.Single(health.Headers.GetValues("X-Console")));
        Assert.Equal(HttpStatusCode.Unauthorized, api.StatusCode);
        Assert.Equal(["/console/ping", "/healthz"], seen);
    }

    [Fact]
    public async Task Registry_ReplacedAfterAddEnrollServer_IsTheOneTheServerUses()
    {
        var calls = new ConcurrentQueue<string>();
        await using var host = await EnrollServerHost.StartAsync(Options("replace"), server =>
        {
            Logging(server);

            RegistryDecorators.Decorate(server.Services, store => CountingRegistry.Wrap(store, calls));
        });
        using var http = new HttpClient { BaseAddress = host.HttpEndpoint };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(host.AdminKeyPath)).Trim());
        calls.Clear();

        using var created = await http.PostAsync(new Uri("/api/tokens", UriKind.Relative), new StringContent("""{"org_id":"acme"}""", System.Text.Encoding.UTF8, "application/json"));
        using var tokens = await http.GetAsync(new Uri("/api/tokens", UriKind.Relative));

        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Contains("acme", await tokens.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.True(calls.Count >= 2, $"the decorator saw {calls.Count} call(s): {string.Join(", ", calls)}");
        Assert.IsAssignableFrom<CountingRegistry>(host.Services.GetRequiredService<IRegistry>());
    }

    [Fact]
    public void AddEnrollServer_ValidatesTheOptions_WithTheSameWordingAsTheHost()
    {
        var services = new ServiceCollection().AddLogging().AddEnrollServer(new EnrollServerOptions { DataDirectory = _folder.Combine("never"), HttpPort = 70000, ClockSkew = TimeSpan.FromHours(2) });
        using var provider = services.BuildServiceProvider();

        var invalid = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<EnrollServerOptions>>().Value);

        Assert.Contains("the HTTP port (--http-port) 70000 is not a TCP port: use 1-65535, or 0 to pick a free one", invalid.Failures);
        Assert.Contains("the clock skew 2h is out of range: use 0s to 1h", invalid.Failures);
    }

    [Theory]
    [InlineData("request-above-packet", "the maximum request size 2,000,000 is out of range: use 1,024 to 1,114,112")]
    [InlineData("keep-alive", "the maximum keep-alive 70000s is out of range: use 5s to 65535s")]
    [InlineData("connections", "the maximum connections (--max-connections) 0 is out of range: use 1 to 10,000,000")]
    [InlineData("concurrency", "the handler concurrency 5,000 is out of range: use 1 to 4,096")]
    [InlineData("disk-full", "the disk-full retry-after 2h is out of range: use 1s to 1h")]
    [InlineData("max-message", "the maximum message size (--max-message-size) 512 bytes is out of range: use 1,024 to 268,435,456 bytes")]
    [InlineData("quota", "the device file quota (--device-file-quota) -1 bytes is out of range: use 0 to 1,125,899,906,842,624 bytes")]
    [InlineData("transfer-expiry", "the incomplete transfer expiry (--incomplete-transfer-expiry) 30s is out of range: use 1m to 365d")]
    public void DeclaredRanges_KeepTheWordingOfTheHandWrittenChecks(string setting, string expected)
    {
        var options = new EnrollServerOptions();
        switch (setting)
        {
            case "request-above-packet": options.MaxRequestBytes = 2_000_000; break;
            case "keep-alive": options.MaxKeepAlive = TimeSpan.FromSeconds(70_000); break;
            case "connections": options.MaxConnections = 0; break;
            case "concurrency": options.HandlerConcurrency = 5000; break;
            case "disk-full": options.DiskFullRetryAfter = TimeSpan.FromHours(2); break;
            case "max-message": options.MaxMessageBytes = 512; break;
            case "quota": options.DeviceFileQuotaBytes = -1; break;
            case "transfer-expiry": options.IncompleteTransferExpiry = TimeSpan.FromSeconds(30); break;
        }

        Assert.Equal([expected], EnrollServerOptionsValidation.Problems(options));
    }

    [Fact]
    public void DefaultOptions_AndNoConnectionCap_AreValid() =>
        Assert.Empty(EnrollServerOptionsValidation.Problems(new EnrollServerOptions { MaxConnections = null }));
}
