using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Server.Handlers;
using Enroll.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

/// <summary>
/// On the embedded broker, a device's twin and commands are its own (issue 13): another device cannot read its desired
/// patches, commands or answers, cannot send requests in its name (the broker refuses the PUBLISH, the server stores
/// nothing and answers nobody), a client not connected as a device cannot send any device-scoped request, and the
/// server answers a device-scoped request only on the sender's own response topic.
/// </summary>
public sealed class DeviceScopedAccessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
    }

    private async Task<(string DeviceId, RawMqttClient Client)> ConnectDeviceAsync(string clientId)
    {
        var token = await _server.CreateTokenAsync();
        string deviceId;
        string accessToken;
        await using (var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _states.Combine(clientId), token.Token, output))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
            accessToken = (await device.Store.LoadAsync())!.AccessToken!;
        }

        var client = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, clientId, deviceId, accessToken);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await client.SubscribeAsync(EnrollTopics.DeviceNamespace(deviceId) + "#"));
        return (deviceId, client);
    }

    [Fact]
    public async Task Device_PublishingAnotherDevicesTwinOrCommandRequests_IsRefused_NothingIsStored_AndNobodyIsAnswered()
    {
        var (a, attacker) = await ConnectDeviceAsync("iso-a");
        var (b, victim) = await ConnectDeviceAsync("iso-b");
        await using var _ = attacker;
        await using var __ = victim;

        foreach (var request in DeviceScopedAccess.Requests)
        {
            foreach (var responseTopic in new[] { EnrollTopics.DeviceResponses(a), EnrollTopics.DeviceResponses(b) })
            {
                var result = await attacker.PublishAsync(request.TopicFor(b), DeviceScopedAccess.ValidPayload(request), responseTopic, [7]);
                Assert.True(result.ReasonCode == MqttClientPublishReasonCode.NotAuthorized, $"{request.Name} to {b} answered to {responseTopic}: {result.ReasonCode}");
            }
        }

        Assert.False(await victim.ReceivesWithinAsync(Quiet), "the other device got something");
        Assert.False(await attacker.ReceivesWithinAsync(Quiet), "the server answered a request the broker refused");
        Assert.Equal(("{}", 0L, "{}", 0L), await _server.TwinInStoreAsync(b));

        // The same client, on its own topic, is served: the refusals above were about access.
        Assert.Equal(1, DeviceScopedAccess.ReportedVersion(await DeviceScopedAccess.ReportAsync(attacker, a, """{"led":"on"}""", Patience)));
        Assert.Equal(("{}", 0L, """{"led":"on"}""", 1L), await _server.TwinInStoreAsync(a));
        Assert.Equal(("{}", 0L, "{}", 0L), await _server.TwinInStoreAsync(b));
    }

    [Theory]
    [InlineData("twin/desired")]
    [InlineData("twin/#")]
    [InlineData("commands")]
    [InlineData("commands/#")]
    [InlineData("responses")]
    [InlineData("+")]
    public async Task Device_SubscribingToAnotherDevicesDesiredPatchesCommandsOrAnswers_IsRefused(string suffix)
    {
        var (_, attacker) = await ConnectDeviceAsync("sub-a");
        var (b, victim) = await ConnectDeviceAsync("sub-b");
        await using var _ = attacker;
        await using var __ = victim;

        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await attacker.SubscribeAsync(EnrollTopics.DeviceNamespace(b) + suffix));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await attacker.SubscribeAsync("enroll/v1/devices/+/" + suffix));
    }

    [Fact]
    public async Task ClientNotConnectedAsADevice_CannotPublishAnyDeviceScopedRequest_AndNothingIsStored()
    {
        var (b, victim) = await ConnectDeviceAsync("anon-victim");
        await using var _ = victim;
        await using var anonymous = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "anon-x");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await anonymous.SubscribeAsync(EnrollTopics.ClientResponses("anon-x")));

        foreach (var request in DeviceScopedAccess.Requests)
        {
            foreach (var deviceId in new[] { b, "anon-x", "dev_nobody" })
            {
                var result = await anonymous.PublishAsync(request.TopicFor(deviceId), DeviceScopedAccess.ValidPayload(request), EnrollTopics.ClientResponses("anon-x"), [1]);
                Assert.True(result.ReasonCode == MqttClientPublishReasonCode.NotAuthorized, $"{request.Name} for {deviceId}: {result.ReasonCode}");
            }
        }

        Assert.False(await anonymous.ReceivesWithinAsync(Quiet), "an anonymous client was answered");
        Assert.False(await victim.ReceivesWithinAsync(Quiet), "the device got something");
        Assert.Equal(("{}", 0L, "{}", 0L), await _server.TwinInStoreAsync(b));
    }

    [Fact]
    public async Task DeviceScopedRequest_NamingAnotherDevicesResponseTopic_IsRefusedOnTheSendersOwnTopic()
    {
        var (a, sender) = await ConnectDeviceAsync("rt-a");
        var (b, victim) = await ConnectDeviceAsync("rt-b");
        await using var _ = sender;
        await using var __ = victim;

        var published = await sender.PublishAsync(EnrollRequests.TwinReport.TopicFor(a), """{"patch":{"led":"on"},"request_id":"r1"}""", EnrollTopics.DeviceResponses(b), [9]);

        Assert.True(published.IsSuccess);
        var answer = await sender.ReceiveAsync(Patience);
        Assert.Equal(EnrollTopics.DeviceResponses(a), answer.Topic);
        using var json = JsonDocument.Parse(RawMqttClient.Text(answer));
        Assert.Equal(ErrorCodes.InvalidRequest, json.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("r1", json.RootElement.GetProperty("request_id").GetString());
        Assert.False(await victim.ReceivesWithinAsync(Quiet));
        Assert.Equal(("{}", 0L, "{}", 0L), await _server.TwinInStoreAsync(a));
    }

    [Fact]
    public async Task Device_AnsweringAnotherDevicesCommandOnItsOwnTopic_IsNotFound_AndTheCommandKeepsWaitingForItsDevice()
    {
        var (a, attacker) = await ConnectDeviceAsync("cmd-a");
        var (b, victim) = await ConnectDeviceAsync("cmd-b");
        await using var attackerSession = attacker;
        await using var victimSession = victim;
        using var body = new StringContent("""{"name":"unlock","payload":{"door":1}}""", Encoding.UTF8, "application/json");
        using var sent = await _server.Http.PostAsync(new Uri($"/api/devices/{b}/commands", UriKind.Relative), body);
        Assert.True(sent.IsSuccessStatusCode, await sent.Content.ReadAsStringAsync());
        string commandId;
        using (var queued = JsonDocument.Parse(await sent.Content.ReadAsStringAsync()))
        {
            commandId = queued.RootElement.GetProperty("command_id").GetString()!;
        }

        var delivered = await victim.ReceiveAsync(Patience);
        Assert.Equal(EnrollTopics.DeviceCommands(b), delivered.Topic);

        // A knows (or guesses) the ID and answers it as its own.
        var published = await attacker.PublishAsync(
            EnrollRequests.CommandResult.TopicFor(a), $$$"""{"command_id":"{{{commandId}}}","status":"succeeded","payload":{"opened":true}}""", EnrollTopics.DeviceResponses(a), [5]);

        Assert.True(published.IsSuccess);
        var answer = await attacker.ReceiveAsync(Patience);
        Assert.Equal(EnrollTopics.DeviceResponses(a), answer.Topic);
        using (var json = JsonDocument.Parse(RawMqttClient.Text(answer)))
        {
            Assert.Equal(ErrorCodes.NotFound, json.RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        using (var command = JsonDocument.Parse(await _server.Http.GetStringAsync(new Uri($"/api/commands/{commandId}", UriKind.Relative))))
        {
            Assert.Equal("sent", command.RootElement.GetProperty("state").GetString());
            Assert.False(command.RootElement.TryGetProperty("result", out _));
        }

        Assert.False(await attacker.ReceivesWithinAsync(Quiet), "device A received device B's command");
    }

    [Fact]
    public async Task ATransportThatLetsAnotherDevicesRequestThrough_StillStoresNothing_AndAnswersOnlyTheSender()
    {
        // The embedded broker and the generated Mosquitto rules never deliver this; the dispatcher holds on its own.
        var (a, first) = await ConnectDeviceAsync("leak-a");
        var (b, second) = await ConnectDeviceAsync("leak-b");
        await first.DisposeAsync();
        await second.DisposeAsync();
        var publisher = new TopicCapturingPublisher();
        var dispatcher = ServerTestKit.Dispatcher(_server, publisher);

        foreach (var request in DeviceScopedAccess.Requests.Where(r => EnrollRequests.All.Contains(r)))
        {
            publisher.Answers.Clear();
            await dispatcher.ProcessAsync(
                new IncomingRequest(request.TopicFor(b), Encoding.UTF8.GetBytes(DeviceScopedAccess.ValidPayload(request)))
                {
                    ResponseTopic = EnrollTopics.DeviceResponses(b),
                    CorrelationData = [4],
                    SenderClientId = "leak-a",
                    SenderDeviceId = a,
                    ReceivedAt = DateTimeOffset.UtcNow,
                },
                CancellationToken.None);

            var (topic, payload) = Assert.Single(publisher.Answers);
            Assert.Equal(EnrollTopics.DeviceResponses(a), topic);
            using var json = JsonDocument.Parse(payload);
            Assert.Equal(ErrorCodes.Forbidden, json.RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        Assert.Equal(("{}", 0L, "{}", 0L), await _server.TwinInStoreAsync(b));
    }

    private sealed class TopicCapturingPublisher : IResponsePublisher
    {
        public ConcurrentQueue<(string Topic, byte[] Payload)> Answers { get; } = new();

        public Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json")
        {
            Answers.Enqueue((topic, payload));
            return Task.CompletedTask;
        }
    }
}
