using System.Net;
using System.Text;
using System.Text.Json;
using Enroll.Protocol.Topics;
using Enroll.Server.Http;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Http;

/// <summary>
/// The EMQX 5 and VerneMQ webhooks, called with the request shapes those brokers document (EMQX: the body template of
/// its HTTP authenticator/authorizer with <c>${clientid}</c>, <c>${username}</c>, <c>${password}</c>, <c>${topic}</c>,
/// <c>${action}</c>; VerneMQ: the <c>vernemq-hook</c> header and the JSON of <c>auth_on_register</c>,
/// <c>auth_on_subscribe</c>, <c>auth_on_publish</c>), against a real server with a real registered device.
/// </summary>
public sealed class BrokerHookTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestServer _server = null!;
    private HttpClient _broker = null!;
    private string _deviceId = null!;
    private string _accessToken = null!;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync(output, o => o.BrokerHooks = true);
        var key = (await File.ReadAllTextAsync(Path.Combine(_server.Options.DataDirectory, BrokerHooks.KeyFileName))).Trim();
        _broker = new HttpClient { BaseAddress = _server.Host.HttpEndpoint };
        _broker.DefaultRequestHeaders.Add(BrokerHooks.KeyHeader, key);

        var token = await _server.CreateTokenAsync();
        await using var client = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "hook-sensor");
        await client.SubscribeAsync(EnrollTopics.ClientResponses("hook-sensor"));
        await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"hook-sensor","provisioning_token":"{{token.Token}}"}""", EnrollTopics.ClientResponses("hook-sensor"));
        using var answer = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync()));
        _deviceId = answer.RootElement.GetProperty("device_id").GetString()!;
        _accessToken = answer.RootElement.GetProperty("jwt_token").GetString()!;
    }

    public async Task DisposeAsync()
    {
        _broker.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task EmqxAuthn_AllowsADeviceByItsAccessToken_UntilTheTokenExpires()
    {
        using var result = await EmqxAsync("authn", new { clientid = "hook-sensor", username = _deviceId, password = _accessToken, peerhost = "10.0.0.7" });

        Assert.Equal("allow", result.RootElement.GetProperty("result").GetString());
        Assert.False(result.RootElement.GetProperty("is_superuser").GetBoolean());
        var expiresAt = DateTimeOffset.FromUnixTimeSeconds(result.RootElement.GetProperty("expire_at").GetInt64());
        Assert.InRange(expiresAt, DateTimeOffset.UtcNow.AddHours(23), DateTimeOffset.UtcNow.AddHours(25));
    }

    [Theory]
    [InlineData("wrong-token")]
    [InlineData("")]
    public async Task EmqxAuthn_DeniesADeviceWithoutAValidToken(string password)
    {
        using var result = await EmqxAsync("authn", new { clientid = "hook-sensor", username = _deviceId, password });

        Assert.Equal("deny", result.RootElement.GetProperty("result").GetString());
    }

    [Fact]
    public async Task EmqxAuthn_DeniesAnotherDevicesToken_AndARevokedDevice()
    {
        using (var other = await EmqxAsync("authn", new { clientid = "x", username = "dev_someoneelse", password = _accessToken }))
        {
            Assert.Equal("deny", other.RootElement.GetProperty("result").GetString());
        }

        await _server.RevokeDeviceAsync(_deviceId);
        using var revoked = await EmqxAsync("authn", new { clientid = "hook-sensor", username = _deviceId, password = _accessToken });
        Assert.Equal("deny", revoked.RootElement.GetProperty("result").GetString());
    }

    [Fact]
    public async Task EmqxAuthn_AdmitsARegisteringClient_AndPassesTheServersOwnUserOn()
    {
        using var anonymous = await EmqxAsync("authn", new { clientid = "new-sensor", username = "", password = "" });
        using var server = await EmqxAsync("authn", new { clientid = "enroll-server-1", username = "enroll-server", password = "its-own" });

        Assert.Equal("allow", anonymous.RootElement.GetProperty("result").GetString());
        Assert.Equal("ignore", server.RootElement.GetProperty("result").GetString());
    }

    [Theory]
    [InlineData("publish", "{device}/messages/telemetry", true, "allow")]
    [InlineData("subscribe", "{device}/#", true, "allow")]
    [InlineData("publish", "enroll/v1/register", true, "allow")]
    [InlineData("subscribe", "enroll/v1/server/keys", true, "allow")]
    [InlineData("publish", "enroll/v1/devices/dev_other/messages/telemetry", true, "deny")]
    [InlineData("subscribe", "enroll/v1/devices/+/messages/#", true, "deny")]
    [InlineData("subscribe", "#", true, "deny")]
    [InlineData("publish", "enroll/v1/register", false, "allow")]
    [InlineData("subscribe", "enroll/v1/clients/hook-sensor/responses", false, "allow")]
    [InlineData("subscribe", "enroll/v1/clients/another/responses", false, "deny")]
    [InlineData("publish", "{device}/messages/telemetry", false, "deny")]
    [InlineData("retain", "enroll/v1/register", true, "deny")]
    public async Task EmqxAuthz_ConfinesClientsLikeTheEmbeddedBroker(string action, string topic, bool asDevice, string expected)
    {
        var body = new { clientid = "hook-sensor", username = asDevice ? _deviceId : "", action, topic = topic.Replace("{device}", $"enroll/v1/devices/{_deviceId}", StringComparison.Ordinal), qos = 1 };

        using var result = await EmqxAsync("authz", body);

        Assert.Equal(expected, result.RootElement.GetProperty("result").GetString());
    }

    [Fact]
    public async Task EmqxAuthz_LeavesTheServersOwnUserToTheBroker()
    {
        using var result = await EmqxAsync("authz", new { clientid = "enroll-server-1", username = "enroll-server", action = "subscribe", topic = "$share/enroll/enroll/v1/register" });

        Assert.Equal("ignore", result.RootElement.GetProperty("result").GetString());
    }

    [Fact]
    public async Task VerneMq_AuthOnRegister_OkForTheDevice_NotAllowedForABadToken()
    {
        using var ok = await VerneMqAsync("auth_on_register", new { peer_addr = "127.0.0.1", peer_port = 50123, username = _deviceId, password = _accessToken, mountpoint = "", client_id = "hook-sensor", clean_session = true });
        using var refused = await VerneMqAsync("auth_on_register_m5", new { peer_addr = "127.0.0.1", peer_port = 50124, username = _deviceId, password = "forged", mountpoint = "", client_id = "hook-sensor", clean_start = true, properties = new { } });

        Assert.Equal("ok", ok.RootElement.GetProperty("result").GetString());
        Assert.Equal("not_allowed", refused.RootElement.GetProperty("result").GetProperty("error").GetString());
    }

    [Fact]
    public async Task VerneMq_AuthOnSubscribe_AllowsOnlyWhenEveryFilterIsTheClientsOwn()
    {
        var own = new { topic = $"enroll/v1/devices/{_deviceId}/#", qos = 1 };
        var keys = new { topic = EnrollTopics.ServerKeys, qos = 1 };
        var foreign = new { topic = "enroll/v1/devices/+/#", qos = 1 };

        using var allowed = await VerneMqAsync("auth_on_subscribe", new { username = _deviceId, client_id = "hook-sensor", mountpoint = "", topics = new[] { own, keys } });
        using var refused = await VerneMqAsync("auth_on_subscribe_m5", new { username = _deviceId, client_id = "hook-sensor", mountpoint = "", topics = new[] { own, foreign }, properties = new { } });

        Assert.Equal("ok", allowed.RootElement.GetProperty("result").GetString());
        Assert.Equal("not_allowed", refused.RootElement.GetProperty("result").GetProperty("error").GetString());
    }

    [Fact]
    public async Task VerneMq_AuthOnPublish_DecidesByTopic_AndPassesUnknownHooksOn()
    {
        var payload = Convert.ToBase64String(Encoding.UTF8.GetBytes("{}"));
        using var own = await VerneMqAsync("auth_on_publish", new { username = _deviceId, client_id = "hook-sensor", mountpoint = "", qos = 1, topic = $"enroll/v1/devices/{_deviceId}/messages/telemetry", payload, retain = false });
        using var foreign = await VerneMqAsync("auth_on_publish_m5", new { username = _deviceId, client_id = "hook-sensor", mountpoint = "", qos = 1, topic = "enroll/v1/devices/dev_other/messages/telemetry", payload, retain = false, properties = new { } });
        using var unknown = await VerneMqAsync("on_deliver", new { username = _deviceId, client_id = "hook-sensor" });

        Assert.Equal("ok", own.RootElement.GetProperty("result").GetString());
        Assert.Equal("not_allowed", foreign.RootElement.GetProperty("result").GetProperty("error").GetString());
        Assert.Equal("next", unknown.RootElement.GetProperty("result").GetString());
    }

    [Fact]
    public async Task Hooks_RefuseACallerWithoutTheKey_ByHeaderOrQuery()
    {
        using var stranger = new HttpClient { BaseAddress = _server.Host.HttpEndpoint };
        var body = JsonContent(new { clientid = "hook-sensor", username = _deviceId, password = _accessToken });

        using var missing = await stranger.PostAsync("/broker/emqx/authn", body);
        using var wrong = await stranger.PostAsync("/broker/emqx/authn?key=ebk_wrong", JsonContent(new { clientid = "hook-sensor" }));
        var key = _broker.DefaultRequestHeaders.GetValues(BrokerHooks.KeyHeader).Single();
        using var byQuery = await stranger.PostAsync($"/broker/emqx/authn?key={Uri.EscapeDataString(key)}", JsonContent(new { clientid = "new-sensor" }));

        Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Equal(HttpStatusCode.OK, byQuery.StatusCode);
    }

    [Fact]
    public async Task Hooks_AnswerABodyThatIsNotAJsonObject_With400()
    {
        using var response = await _broker.PostAsync("/broker/emqx/authz", new StringContent("[1,2", Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Fact]
    public async Task Hooks_AreNotServed_UnlessEnabled()
    {
        await using var plain = await TestServer.StartAsync(output);
        using var response = await plain.Http.PostAsync("/broker/emqx/authn", JsonContent(new { clientid = "x" }));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.False(File.Exists(Path.Combine(plain.Options.DataDirectory, BrokerHooks.KeyFileName)));
    }

    private async Task<JsonDocument> EmqxAsync(string hook, object body)
    {
        using var response = await _broker.PostAsync($"/broker/emqx/{hook}", JsonContent(body));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    }

    private async Task<JsonDocument> VerneMqAsync(string hook, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/broker/vernemq") { Content = JsonContent(body) };
        request.Headers.Add("vernemq-hook", hook);
        using var response = await _broker.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    }

    private static StringContent JsonContent(object body) =>
        new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
}
