using System.Text.Json;
using Enroll.Protocol.Access;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Server.Tests.Security;
using Enroll.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Broker;

/// <summary>
/// The twin and command topics through a real Mosquitto with the ACL the server generates (deploy/mosquitto/enroll.acl):
/// the server behind it (<c>--broker mqtt://...</c>, shared subscriptions to the request filters) answers a device's
/// twin/get and twin/report, and a device reaches nothing of another's. Mosquitto's acl_file acknowledges a forbidden
/// SUBSCRIBE and then delivers nothing, so reads are asserted by delivery.
/// </summary>
public sealed class MosquittoAclDeviceScopedTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ServerPassword = "server-secret-for-twin-tests";
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);
    private MosquittoBroker _mosquitto = null!;
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync()
    {
        // Device users stand in for the JWT auth plugin a production Mosquitto would use.
        _mosquitto = await MosquittoBroker.StartAsync(
            users: new Dictionary<string, string> { ["enroll-server"] = ServerPassword, ["dev-a"] = "a-password", ["dev-b"] = "b-password" },
            acl: MosquittoAcl.Render());
        _server = await TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = _mosquitto.Endpoint;
            o.BrokerPassword = ServerPassword;
        });
        var token = (await _server.CreateTokenAsync()).Token!;
        foreach (var (clientId, deviceId) in new[] { ("client-a", "dev-a"), ("client-b", "dev-b") })
        {
            await using var device = DeviceHarness.Create(_mosquitto.Endpoint, clientId, _states.Combine(clientId), token, output, o => o.DesiredDeviceId = deviceId);
            Assert.Equal(deviceId, (await device.Registration.StartAsync()).DeviceId);
        }
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _mosquitto.DisposeAsync();
        _states.Dispose();
    }

    private async Task<RawMqttClient> ConnectAsync(string clientId, string deviceId, string password)
    {
        var client = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, clientId, deviceId, password);
        await client.SubscribeAsync(EnrollTopics.DeviceResponses(deviceId));
        return client;
    }

    [Fact]
    public async Task TwinGetAndReportFromADeviceOnMosquitto_AreAnsweredByTheServerBehindIt()
    {
        await using var a = await ConnectAsync("client-a", "dev-a", "a-password");

        Assert.Equal(1, DeviceScopedAccess.ReportedVersion(await DeviceScopedAccess.ReportAsync(a, "dev-a", """{"firmware":"2.0"}""", Patience)));
        Assert.Equal(2, DeviceScopedAccess.ReportedVersion(await DeviceScopedAccess.ReportAsync(a, "dev-a", """{"led":"on"}""", Patience)));
        Assert.Equal(1, await _server.PatchDesiredInStoreAsync("dev-a", """{"interval_s":5}"""));

        Assert.True((await a.PublishAsync(EnrollRequests.TwinGet.TopicFor("dev-a"), """{"desired_version":0}""", EnrollTopics.DeviceResponses("dev-a"), [3])).IsSuccess);
        var answer = await a.ReceiveAsync(Patience);
        Assert.Equal(
            """{"desired_version":1,"patches":[{"version":1,"patch":{"interval_s":5}}],"reported_version":2,"reported":{"firmware":"2.0","led":"on"}}""",
            RawMqttClient.Text(answer));
        Assert.Equal(new byte[] { 3 }, answer.CorrelationData);
    }

    [Fact]
    public async Task DeviceOnMosquitto_CannotSendRequestsForAnotherDevice_NorReadItsDesiredPatchesCommandsOrAnswers()
    {
        await using var a = await ConnectAsync("client-a", "dev-a", "a-password");
        await using var b = await ConnectAsync("client-b", "dev-b", "b-password");
        await b.SubscribeAsync(EnrollTopics.DeviceNamespace("dev-b") + "#");
        await using var anonymous = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "client-x");
        foreach (var topic in DeviceScopedAccess.ServerToDeviceTopics("dev-b"))
        {
            await a.SubscribeAsync(topic);
            await anonymous.SubscribeAsync(topic);
        }

        await a.SubscribeAsync("enroll/v1/devices/+/twin/desired");
        await a.SubscribeAsync("enroll/v1/devices/+/commands");
        foreach (var request in DeviceScopedAccess.Requests)
        {
            Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await a.PublishAsync(request.TopicFor("dev-b"), DeviceScopedAccess.ValidPayload(request), EnrollTopics.DeviceResponses("dev-b"), [1])).ReasonCode);
            Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await anonymous.PublishAsync(request.TopicFor("dev-b"), DeviceScopedAccess.ValidPayload(request), EnrollTopics.DeviceResponses("dev-b"), [2])).ReasonCode);
        }

        // What the server sends device B reaches B, and only B.
        await using (var server = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "server-side", "enroll-server", ServerPassword))
        {
            await server.PublishAsync(EnrollTopics.DeviceTwinDesired("dev-b"), """{"version":1,"patch":{"led":"on"}}""");
            await server.PublishAsync(EnrollTopics.DeviceCommands("dev-b"), """{"command_id":"cmd_1","name":"reboot"}""");
        }

        var atB = new[] { (await b.ReceiveAsync(Patience)).Topic, (await b.ReceiveAsync(Patience)).Topic };
        Assert.Equal([EnrollTopics.DeviceCommands("dev-b"), EnrollTopics.DeviceTwinDesired("dev-b")], atB.Order(StringComparer.Ordinal));
        Assert.False(await b.ReceivesWithinAsync(Quiet), "device B got an answer to a request it never sent");
        Assert.False(await a.ReceivesWithinAsync(Quiet), "device A read device B's topics");
        Assert.False(await anonymous.ReceivesWithinAsync(Quiet), "an anonymous client read device B's topics");
        Assert.Equal(("{}", 0L, "{}", 0L), await _server.TwinInStoreAsync("dev-b"));
    }
}

/// <summary>
/// The same through Mosquitto's dynamic-security plugin administered by the server (<c>--broker-dynsec</c>): devices sign
/// in with their access tokens, their twin requests are served, and the role the server gives each device reaches only
/// its own namespace — refused SUBSCRIBE and PUBLISH come back as Not authorized.
/// </summary>
public sealed class MosquittoDynamicSecurityDeviceScopedTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ServerUser = "enroll-server";
    private const string ServerPassword = "server-secret-for-dynsec-twin-tests";
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _states = new();
    private MosquittoBroker _mosquitto = null!;
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _mosquitto = await MosquittoBroker.StartWithDynamicSecurityAsync(ServerUser, ServerPassword);
        _server = await TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = _mosquitto.Endpoint;
            o.BrokerUsername = ServerUser;
            o.BrokerPassword = ServerPassword;
            o.BrokerAdmin = BrokerAdmin.MosquittoDynamicSecurity;
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _mosquitto.DisposeAsync();
        _states.Dispose();
    }

    /// <summary>Registers through Mosquitto with the device library, then connects as the device with its access token.</summary>
    private async Task<(string DeviceId, RawMqttClient Client)> ConnectDeviceAsync(string clientId)
    {
        var token = (await _server.CreateTokenAsync()).Token!;
        Enroll.Device.DeviceCredentials credentials;
        await using (var device = DeviceHarness.Create(_mosquitto.Endpoint, clientId, _states.Combine(clientId), token, output))
        {
            await device.Registration.StartAsync().WaitAsync(Patience);
            credentials = (await device.Store.LoadAsync())!;
        }

        var client = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, clientId, credentials.DeviceId, credentials.AccessToken);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await client.SubscribeAsync(EnrollTopics.DeviceNamespace(credentials.DeviceId!) + "#"));
        return (credentials.DeviceId!, client);
    }

    [Fact]
    public async Task DeviceSignedInWithItsToken_HasItsTwinServed_AndIsRefusedAnotherDevicesTwinAndCommands()
    {
        var (a, first) = await ConnectDeviceAsync("dynsec-twin-a");
        var (b, second) = await ConnectDeviceAsync("dynsec-twin-b");
        await using var asA = first;
        await using var asB = second;

        foreach (var topic in DeviceScopedAccess.ServerToDeviceTopics(b))
        {
            Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await asA.SubscribeAsync(topic));
        }

        foreach (var request in DeviceScopedAccess.Requests)
        {
            var refused = await asA.PublishAsync(request.TopicFor(b), DeviceScopedAccess.ValidPayload(request), EnrollTopics.DeviceResponses(b), [1]);
            Assert.True(refused.ReasonCode == MqttClientPublishReasonCode.NotAuthorized, $"{request.Name} for {b}: {refused.ReasonCode}");
        }

        Assert.False(await asB.ReceivesWithinAsync(Quiet), "device B got something");
        Assert.Equal(("{}", 0L, "{}", 0L), await _server.TwinInStoreAsync(b));

        // A's own requests, published with its own role, are served through Mosquitto.
        var report = await asA.PublishAsync(EnrollRequests.TwinReport.TopicFor(a), """{"patch":{"led":"on"}}""", EnrollTopics.DeviceResponses(a), [2]);
        Assert.True(report.IsSuccess, report.ReasonCode.ToString());
        var answers = new List<MqttApplicationMessage>();
        while (answers.Count == 0)
        {
            var message = await asA.ReceiveAsync(Patience);
            if (message.Topic == EnrollTopics.DeviceResponses(a))
            {
                answers.Add(message);
            }
        }

        using var json = JsonDocument.Parse(RawMqttClient.Text(answers[0]));
        Assert.Equal(1, json.RootElement.GetProperty("reported_version").GetInt64());
        Assert.Equal(("{}", 0L, """{"led":"on"}""", 1L), await _server.TwinInStoreAsync(a));
    }
}
