using Enroll.Protocol.Topics;
using Enroll.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

public sealed class AccessControlTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(300);
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
    }

    private async Task<(string DeviceId, string AccessToken)> RegisterAsync(string clientId)
    {
        var token = await _server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _states.Combine(clientId), token.Token, output);
        var identity = await device.Registration.StartAsync();
        var stored = await device.Store.LoadAsync();
        return (identity.DeviceId, stored!.AccessToken!);
    }

    [Theory]
    [InlineData("enroll/v1/devices/{other}/#")]
    [InlineData("enroll/v1/devices/{other}/messages/telemetry")]
    [InlineData("enroll/v1/devices/+/messages/#")]
    [InlineData("enroll/v1/devices/#")]
    [InlineData("enroll/v1/clients/{otherClient}/#")]
    [InlineData("enroll/v1/clients/+/responses")]
    [InlineData("enroll/v1/register")]
    [InlineData("#")]
    [InlineData("+/#")]
    [InlineData("$SYS/#")]
    public async Task Device_SubscribingOutsideItsNamespace_IsRefusedWithNotAuthorized(string pattern)
    {
        var a = await RegisterAsync("acl-a");
        var b = await RegisterAsync("acl-b");
        await using var deviceA = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "acl-a", a.DeviceId, a.AccessToken);

        var code = await deviceA.SubscribeAsync(pattern.Replace("{other}", b.DeviceId, StringComparison.Ordinal).Replace("{otherClient}", "acl-b", StringComparison.Ordinal));

        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, code);
    }

    [Fact]
    public async Task Device_SubscribingInsideItsNamespace_IsGranted()
    {
        var a = await RegisterAsync("acl-own");
        await using var device = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "acl-own", a.DeviceId, a.AccessToken);

        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync($"enroll/v1/devices/{a.DeviceId}/#"));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync(EnrollTopics.ClientResponses("acl-own")));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync(EnrollTopics.ServerKeys));
    }

    [Fact]
    public async Task Device_PublishingOnAnotherDevicesTopic_IsRefusedAndNothingIsDelivered()
    {
        var a = await RegisterAsync("pub-a");
        var b = await RegisterAsync("pub-b");
        await using var victim = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "pub-b", b.DeviceId, b.AccessToken);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await victim.SubscribeAsync($"enroll/v1/devices/{b.DeviceId}/#"));
        await using var attacker = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "pub-a", a.DeviceId, a.AccessToken);

        var result = await attacker.PublishAsync($"enroll/v1/devices/{b.DeviceId}/commands/reboot", "{}");
        var spoofed = await attacker.PublishAsync(EnrollTopics.DeviceResponses(b.DeviceId), """{"device_id":"x","jwt_token":"y"}""");

        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, spoofed.ReasonCode);
        Assert.False(await victim.ReceivesWithinAsync(Quiet));
    }

    [Fact]
    public async Task AnonymousClient_MayOnlyPublishRequestsAndReadItsOwnClientTopics()
    {
        var b = await RegisterAsync("anon-victim");
        await using var anonymous = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "anon-1");

        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await anonymous.SubscribeAsync("enroll/v1/clients/anon-1/#"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await anonymous.SubscribeAsync($"enroll/v1/devices/{b.DeviceId}/#"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await anonymous.SubscribeAsync("enroll/v1/clients/anon-victim/#"));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await anonymous.PublishAsync($"enroll/v1/devices/{b.DeviceId}/messages/x", "{}")).ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await anonymous.PublishAsync("some/other/topic", "{}")).ReasonCode);
        Assert.True((await anonymous.PublishAsync(EnrollTopics.Register, "{}")).IsSuccess);
    }

    [Theory]
    [InlineData("enroll/v1/clients/someone-else/responses")]
    [InlineData("enroll/v1/clients/impostor/responses")]
    public async Task Request_WhoseClientIdIsNotTheMqttClientId_IsForbiddenAndAnsweredToTheSenderOnly(string responseTopic)
    {
        var token = await _server.CreateTokenAsync();
        await using var victim = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "someone-else");
        await victim.SubscribeAsync("enroll/v1/clients/someone-else/#");
        await using var impostor = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "impostor");
        await impostor.SubscribeAsync("enroll/v1/clients/impostor/#");

        await impostor.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"someone-else","provisioning_token":"{{token.Token}}"}""", responseTopic);

        var answer = RawMqttClient.Text(await impostor.ReceiveAsync());
        Assert.Contains("\"forbidden\"", answer, StringComparison.Ordinal);
        Assert.Contains("MQTT client ID", answer, StringComparison.Ordinal);
        Assert.False(await victim.ReceivesWithinAsync(Quiet));
        Assert.Empty(await _server.ListDevicesAsync());
    }

    [Fact]
    public async Task ConnectedDevicesClientId_CannotBeTakenOver_ExceptByTheDeviceItself()
    {
        var a = await RegisterAsync("owner-1");
        var b = await RegisterAsync("other-1");
        await using var owner = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "owner-1", a.DeviceId, a.AccessToken);

        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "owner-1", null, null));
        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "owner-1", b.DeviceId, b.AccessToken));
        Assert.True(owner.Client.IsConnected);

        // The device itself may replace a stale session of its own.
        Assert.Equal(MqttClientConnectResultCode.Success, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "owner-1", a.DeviceId, a.AccessToken));
    }

    [Fact]
    public async Task Connect_WithBadTokenGarbageOrRevokedDevice_IsRefusedWithTheRightReasonCode()
    {
        var a = await RegisterAsync("conn-1");

        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "conn-1", a.DeviceId, "not-a-token"));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "conn-1", "dev_someone_else", a.AccessToken));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "conn-1", "$enroll-server", "x"));
        await _server.RevokeDeviceAsync(a.DeviceId);
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "conn-1", a.DeviceId, a.AccessToken));
    }

    [Fact]
    public async Task RevokingADevice_EndsItsOpenSession_AndItCannotReconnect()
    {
        var a = await RegisterAsync("revoked-online");
        await using var device = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "revoked-online", a.DeviceId, a.AccessToken);
        var disconnected = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        device.Client.DisconnectedAsync += e =>
        {
            disconnected.TrySetResult(e);
            return Task.CompletedTask;
        };

        await _server.RevokeDeviceAsync(a.DeviceId);

        var reason = await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, reason.Reason);
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "revoked-online", a.DeviceId, a.AccessToken));
    }
}
