using Enroll.Protocol.Access;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Broker;

/// <summary>
/// The Mosquitto deployment documented in docs/operations.md (deploy/mosquitto/enroll.acl), with a real Mosquitto: the
/// server serves requests through it, and the ACL enforces the same rules as the embedded broker. Mosquitto's acl_file
/// checks reads when it delivers, not when it subscribes: a forbidden SUBSCRIBE is acknowledged, but nothing it would
/// match is ever delivered — so these tests assert delivery, not SUBACK codes.
/// </summary>
public sealed class MosquittoAclTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ServerPassword = "server-secret-for-tests";
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(500);
    private MosquittoBroker _mosquitto = null!;
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync()
    {
        // Device users stand in for the JWT auth plugin a production Mosquitto would use.
        // The ACL generated from the request table (MosquittoAclAgreementTests: the same text as deploy/mosquitto/enroll.acl).
        _mosquitto = await MosquittoBroker.StartAsync(
            users: new Dictionary<string, string> { ["enroll-server"] = ServerPassword, ["dev-a"] = "a-password", ["dev-b"] = "b-password" },
            acl: MosquittoAcl.Render());
        _server = await TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = _mosquitto.Endpoint;
            o.BrokerPassword = ServerPassword;
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _mosquitto.DisposeAsync();
        _states.Dispose();
    }

    private async Task RegisterAsync(string clientId, string deviceId, string token)
    {
        await using var device = DeviceHarness.Create(_mosquitto.Endpoint, clientId, _states.Combine(clientId), token, output, o => o.DesiredDeviceId = deviceId);
        Assert.Equal(deviceId, (await device.Registration.StartAsync()).DeviceId);
    }

    [Fact]
    public async Task DevicesRegisterThroughMosquitto_WithTheServerOnlyUsingItsOwnCredential()
    {
        var token = await _server.CreateTokenAsync();
        await RegisterAsync("client-a", "dev-a", token.Token!);

        Assert.Equal("dev-a", Assert.Single(await _server.ListDevicesAsync()).DeviceId);
        Assert.NotEqual(MqttClientConnectResultCode.Success, await RawMqttClient.TryConnectAsync(_mosquitto.Endpoint, "thief", "enroll-server", "guess"));
    }

    [Fact]
    public async Task DeviceA_SeesNothingOfDeviceB_NorOfOtherClientsRequestsAndAnswers()
    {
        var token = await _server.CreateTokenAsync();
        await RegisterAsync("client-a", "dev-a", token.Token!);
        await RegisterAsync("client-b", "dev-b", token.Token!);
        await using var a = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-a", "dev-a", "a-password");
        await using var b = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-b", "dev-b", "b-password");
        await using var anonymous = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-x");
        foreach (var filter in new[] { "enroll/v1/devices/dev-b/#", "enroll/v1/devices/+/messages/#", "#", "enroll/v1/register", "enroll/v1/clients/client-c/#" })
        {
            await a.SubscribeAsync(filter);
            await anonymous.SubscribeAsync(filter);
        }

        // Device B talks on its own topics; a new client registers (its request carries the token; its answer the JWT).
        Assert.True((await b.PublishAsync("enroll/v1/devices/dev-b/messages/telemetry", """{"t":21}""")).IsSuccess);
        await RegisterAsync("client-c", "dev-c", token.Token!);

        // The only thing "#" may bring is the public, retained key set.
        Assert.All(await a.CollectAsync(Quiet), m => Assert.Equal(EnrollTopics.ServerKeys, m.Topic));
        Assert.All(await anonymous.CollectAsync(Quiet), m => Assert.Equal(EnrollTopics.ServerKeys, m.Topic));
    }

    [Fact]
    public async Task PublishingIntoAnotherDevicesNamespace_IsRefusedAndNeverDelivered()
    {
        var token = await _server.CreateTokenAsync();
        await RegisterAsync("client-a", "dev-a", token.Token!);
        await RegisterAsync("client-b", "dev-b", token.Token!);
        await using var a = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-a", "dev-a", "a-password");
        await using var b = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-b", "dev-b", "b-password");
        await using var anonymous = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-x");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await b.SubscribeAsync("enroll/v1/devices/dev-b/#"));

        var fromA = await a.PublishAsync("enroll/v1/devices/dev-b/commands", "{}");
        var fromAnonymous = await anonymous.PublishAsync("enroll/v1/devices/dev-b/responses", """{"device_id":"x","jwt_token":"y"}""");

        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, fromA.ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, fromAnonymous.ReasonCode);
        Assert.False(await b.ReceivesWithinAsync(Quiet));
    }

    [Fact]
    public async Task OwnTopics_AreReadableAndWritable()
    {
        var token = await _server.CreateTokenAsync();
        await RegisterAsync("client-a", "dev-a", token.Token!);
        await using var a = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-a", "dev-a", "a-password");
        await a.SubscribeAsync("enroll/v1/devices/dev-a/#");

        Assert.True((await a.PublishAsync("enroll/v1/devices/dev-a/messages/telemetry", "{}")).IsSuccess);
        Assert.Equal("enroll/v1/devices/dev-a/messages/telemetry", (await a.ReceiveAsync()).Topic);
    }
}
