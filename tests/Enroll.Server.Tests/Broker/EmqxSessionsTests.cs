using System.Collections.Concurrent;
using System.Net;
using System.Text;
using Enroll.Protocol.Access;
using Enroll.Server.Broker;
using Enroll.Server.Broker.Emqx;
using Enroll.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Broker;

/// <summary>
/// What Enroll sends to EMQX 5's REST API to end a revoked device's session, checked against the request shape of EMQX's
/// documentation (<c>DELETE /api/v5/clients/{clientid}</c>, HTTP Basic with an API key and secret; 204 kicked, 404 not
/// connected). EMQX is not packaged here, so the API is a local HTTP listener that records each request and answers as
/// EMQX documents; the end-to-end case revokes a device registered through a real Mosquitto.
/// </summary>
public sealed class EmqxSessionsTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ApiKey = "enroll-revoker";
    private const string ApiSecret = "s3cret-of-the-api-key";
    private readonly ConcurrentQueue<(string Method, string RawPath, string? Authorization)> _requests = new();
    private readonly ConcurrentDictionary<string, bool> _connected = new(StringComparer.Ordinal);
    private WebApplication _api = null!;
    private Uri _apiAddress = null!;

    /// <summary>The status the stand-in answers for a client that is not connected; 500 to play a failing node.</summary>
    private HttpStatusCode _notConnectedStatus = HttpStatusCode.NotFound;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _api = builder.Build();
        _api.MapDelete("/api/v5/clients/{clientId}", (HttpContext context, string clientId) =>
        {
            _requests.Enqueue((context.Request.Method, context.Request.Path.ToUriComponent(), context.Request.Headers.Authorization.ToString()));
            if (context.Request.Headers.Authorization.ToString() != "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{ApiKey}:{ApiSecret}")))
            {
                return Results.StatusCode(401);
            }

            // ASP.NET leaves %2F encoded in a route value; EMQX decodes the whole segment.
            return _connected.TryRemove(Uri.UnescapeDataString(clientId), out _) ? Results.NoContent() : Results.StatusCode((int)_notConnectedStatus);
        });
        await _api.StartAsync();
        _apiAddress = new Uri(_api.Urls.Single());
    }

    public async Task DisposeAsync() => await _api.DisposeAsync();

    private EmqxSessions Sessions(string key = $"{ApiKey}:{ApiSecret}") => new(
        new EnrollServerOptions { BrokerAdmin = BrokerAdmin.EmqxApi, BrokerAdminUrl = _apiAddress, BrokerAdminKey = key },
        new HttpClient(),
        NullLogger<EmqxSessions>.Instance);

    [Fact]
    public async Task AConnectedClient_IsKickedWithTheDocumentedRequest_AndReportedDisconnected()
    {
        _connected["gw/7 ünïcode"] = true;
        using var sessions = Sessions();

        Assert.Equal(DisconnectResult.Disconnected, await sessions.DisconnectAsync("dev_1", "gw/7 ünïcode"));

        var request = Assert.Single(_requests);
        Assert.Equal("DELETE", request.Method);
        Assert.Equal("/api/v5/clients/gw%2F7%20%C3%BCn%C3%AFcode", request.RawPath);
        Assert.Equal("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{ApiKey}:{ApiSecret}")), request.Authorization);
    }

    [Fact]
    public async Task AClientThatIsNotConnected_IsReportedNotConnected()
    {
        using var sessions = Sessions();
        Assert.Equal(DisconnectResult.NotConnected, await sessions.DisconnectAsync("dev_2", "gw-2"));
    }

    [Fact]
    public async Task AWrongKey_AFailingNode_OrNoApi_AreReportedFailed()
    {
        _connected["gw-3"] = true;
        using (var wrongKey = Sessions("someone:else"))
        {
            Assert.Equal(DisconnectResult.Failed, await wrongKey.DisconnectAsync("dev_3", "gw-3"));
        }

        _notConnectedStatus = HttpStatusCode.InternalServerError;
        using (var failing = Sessions())
        {
            Assert.Equal(DisconnectResult.Failed, await failing.DisconnectAsync("dev_4", "gw-4"));
        }

        using var nothingThere = new EmqxSessions(
            new EnrollServerOptions { BrokerAdmin = BrokerAdmin.EmqxApi, BrokerAdminUrl = new Uri($"http://127.0.0.1:{FreeTcpPort()}/"), BrokerAdminKey = $"{ApiKey}:{ApiSecret}" },
            new HttpClient(),
            NullLogger<EmqxSessions>.Instance);
        Assert.Equal(DisconnectResult.Failed, await nothingThere.DisconnectAsync("dev_5", "gw-5"));
    }

    [Theory]
    [InlineData(null, "key:secret")]
    [InlineData("ftp://emqx:18083/", "key:secret")]
    [InlineData("http://emqx:18083/", null)]
    [InlineData("http://emqx:18083/", "no-secret")]
    [InlineData("http://emqx:18083/", "key:")]
    public void TheAdministratorWithoutAnAddressOrAKeyAndSecret_IsRefusedAtStart(string? url, string? key)
    {
        var options = new EnrollServerOptions
        {
            ExternalBroker = new Uri("mqtt://127.0.0.1:1883"),
            BrokerAdmin = BrokerAdmin.EmqxApi,
            BrokerAdminUrl = url is null ? null : new Uri(url),
            BrokerAdminKey = key,
        };

        var result = new EnrollServerOptionsRules().Validate(null, options);

        Assert.True(result.Failed);
        Assert.Contains("ENROLL_BROKER_ADMIN_KEY", result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ADeviceRevokedThroughTheApi_IsKickedFromEmqx_AndTheAnswerSaysSo()
    {
        await using var mosquitto = await MosquittoBroker.StartAsync(acl: MosquittoAcl.Render());
        using var data = new TempDirectory("enroll-server");
        using var states = new TempDirectory();
        await using var server = await TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = mosquitto.Endpoint;
            o.BrokerPassword = "unchecked-here";
            o.BrokerClientId = "enroll-emqx-test";
            o.BrokerAdmin = BrokerAdmin.EmqxApi;
            o.BrokerAdminUrl = _apiAddress;
            o.BrokerAdminKey = $"{ApiKey}:{ApiSecret}";
        }, dataDirectory: data.Path);
        Assert.IsType<EmqxSessions>(server.Host.Services.GetRequiredService<IDeviceSessions>());

        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(mosquitto.Endpoint, "gw-revoked", states.Combine("gw"), token.Token, output);
        var deviceId = (await device.Registration.StartAsync()).DeviceId!;
        _connected["gw-revoked"] = true;

        var revoked = await server.RevokeDeviceAsync(deviceId);

        Assert.Equal("disconnected", revoked.Disconnect);
        Assert.Equal("/api/v5/clients/gw-revoked", Assert.Single(_requests).RawPath);
    }

    private static int FreeTcpPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
