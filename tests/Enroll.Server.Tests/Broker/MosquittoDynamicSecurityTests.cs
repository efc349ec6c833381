using Enroll.Device;
using Enroll.Protocol;
using Enroll.Server.Broker.Mosquitto;
using Enroll.Server.Domain;
using Enroll.Server.Tokens;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Broker;

/// <summary>
/// A real Mosquitto 2 with its dynamic-security plugin and a real Enroll server on it (external broker, encrypted
/// requests required, <see cref="BrokerAdmin.MosquittoDynamicSecurity"/>): devices registered through it sign in to
/// Mosquitto with their Device ID and access token, are confined to their own topics, are dropped and refused when
/// revoked, and an old token stops working when the device renews it. Nothing here is a stand-in.
/// </summary>
public sealed class MosquittoDynamicSecurityTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ServerUser = "enroll-server";
    private const string ServerPassword = "server-secret-for-dynsec-tests";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(500);
    private readonly TempDirectory _states = new();
    private readonly List<DeviceHarness> _devices = [];
    private MosquittoBroker _mosquitto = null!;
    private TestServer _server = null!;
    private string _token = null!;

    public async Task InitializeAsync()
    {
        _mosquitto = await MosquittoBroker.StartWithDynamicSecurityAsync(ServerUser, ServerPassword);
        _server = await TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = _mosquitto.Endpoint;
            o.BrokerUsername = ServerUser;
            o.BrokerPassword = ServerPassword;
            o.RequireEncryption = true;
            o.BrokerAdmin = BrokerAdmin.MosquittoDynamicSecurity;
            o.RefreshGrace = TimeSpan.Zero; // a Registration Token used after its refresh is reuse at once
        });
        _token = (await _server.CreateTokenAsync()).Token!;
    }

    public async Task DisposeAsync()
    {
        foreach (var device in _devices)
        {
            await device.DisposeAsync();
        }

        await _server.DisposeAsync();
        await _mosquitto.DisposeAsync();
        _states.Dispose();
    }

    /// <summary>Registers a device through Mosquitto with the real device library, encrypting as the server requires.</summary>
    private async Task<(DeviceHarness Device, DeviceCredentials Credentials)> RegisterAsync(string clientId)
    {
        var device = DeviceHarness.Create(_mosquitto.Endpoint, clientId, _states.Combine(clientId), _token, output, o => o.EncryptRequests = true);
        _devices.Add(device);
        await device.Registration.StartAsync().WaitAsync(Patience);
        var credentials = await device.Store.LoadAsync();
        Assert.NotNull(credentials?.AccessToken);
        return (device, credentials!);
    }

    /// <summary>Stops the device library, so only the test's own session uses the device's client ID from now on.</summary>
    private async Task StopAsync(DeviceHarness device)
    {
        _devices.Remove(device);
        await device.DisposeAsync();
    }

    private Task<RawMqttClient> ConnectAsDeviceAsync(DeviceCredentials credentials, string? password = null) =>
        RawMqttClient.ConnectAsync(_mosquitto.Endpoint, credentials.ClientId, credentials.DeviceId, password ?? credentials.AccessToken);

    private Task<MqttClientConnectResultCode> TryConnectAsDeviceAsync(DeviceCredentials credentials, string password) =>
        RawMqttClient.TryConnectAsync(_mosquitto.Endpoint, credentials.ClientId, credentials.DeviceId, password);

    [Fact]
    public async Task RegisteredDevice_SignsInToMosquittoWithItsAccessToken_AndItsMessageIsDelivered()
    {
        var (device, credentials) = await RegisterAsync("dynsec-send");
        await using var listener = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "listener", ServerUser, ServerPassword);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await listener.SubscribeAsync(EnrollTopics.DeviceNamespace(credentials.DeviceId!) + "messages/#"));

        // The device library's own session: it connects as its Device ID with the token, publishes, is acknowledged.
        await device.Outbox.SendAsync("telemetry", """{"t":21}"""u8.ToArray());
        await device.StartAgentsAsync();

        var delivered = await listener.ReceiveAsync(Patience);
        Assert.Equal(EnrollTopics.DeviceMessages(credentials.DeviceId!, "telemetry"), delivered.Topic);
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "the broker acknowledged the message");
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await TryConnectAsDeviceAsync(credentials, "not-the-token"));
        // Mosquitto (dropped to user mosquitto) could write its file: the device survives a broker restart.
        Assert.Contains(credentials.DeviceId!, await File.ReadAllTextAsync(_mosquitto.DynamicSecurityFile!), StringComparison.Ordinal);
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized,
            await RawMqttClient.TryConnectAsync(_mosquitto.Endpoint, "some-other-client", credentials.DeviceId, credentials.AccessToken));
    }

    [Fact]
    public async Task Device_IsRefusedAnotherDevicesTopics_ButUsesItsOwn()
    {
        var (deviceA, a) = await RegisterAsync("dynsec-a");
        var (_, b) = await RegisterAsync("dynsec-b");
        await StopAsync(deviceA);
        await using var asA = await ConnectAsDeviceAsync(a);
        var other = EnrollTopics.DeviceNamespace(b.DeviceId!);

        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await asA.SubscribeAsync(other + "#"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await asA.SubscribeAsync("enroll/v1/devices/+/messages/#"));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await asA.PublishAsync(other + "messages/telemetry", "{}")).ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await asA.PublishAsync(EnrollTopics.DeviceResponses(b.DeviceId!), "{}")).ReasonCode);

        var own = EnrollTopics.DeviceNamespace(a.DeviceId!);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await asA.SubscribeAsync(own + "#"));
        Assert.True((await asA.PublishAsync(own + "messages/telemetry", "{}")).IsSuccess);
        Assert.Equal(own + "messages/telemetry", (await asA.ReceiveAsync(Patience)).Topic);
    }

    [Fact]
    public async Task RevokingThroughTheAdminApi_DropsTheDeviceFromMosquitto_AndItIsRefusedOnReconnect()
    {
        var (device, credentials) = await RegisterAsync("dynsec-revoke");
        await StopAsync(device);
        await using var session = await ConnectAsDeviceAsync(credentials);
        Assert.True(session.Client.IsConnected);

        var revoked = await _server.RevokeDeviceAsync(credentials.DeviceId!);

        Assert.Equal("disconnected", revoked.Disconnect);
        await Eventually.ReturnsAsync(() => Task.FromResult(session.Client.IsConnected), connected => !connected, TimeSpan.FromSeconds(5), "Mosquitto dropped the revoked device");
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await TryConnectAsDeviceAsync(credentials, credentials.AccessToken!));
    }

    [Fact]
    public async Task AfterTheDeviceRenewsItsAccessToken_TheOldTokenIsRefused_AndTheNewOneAccepted()
    {
        var (device, old) = await RegisterAsync("dynsec-renew");

        // An ACL missing from the device's role (as one for a request type added since the role was made would be) is
        // added again with the next token.
        var own = EnrollTopics.DeviceNamespace(old.DeviceId!);
        await using (var admin = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "operator", ServerUser, ServerPassword))
        {
            await admin.SubscribeAsync(MosquittoDynamicSecurity.ResponseTopic);
            await admin.PublishAsync(MosquittoDynamicSecurity.ControlTopic,
                $$"""{"commands":[{"command":"removeRoleACL","rolename":"{{MosquittoDynamicSecurity.RoleName(old.DeviceId!)}}","acltype":"publishClientSend","topic":"{{own}}#"}]}""");
            Assert.DoesNotContain("error", RawMqttClient.Text(await admin.ReceiveAsync(Patience)), StringComparison.Ordinal);
        }

        // The stored renewal time passes (the device restarts on that state): its next GetAccessTokenAsync registers
        // again with the Registration Token, as token care does before the token expires.
        await device.Store.SaveAsync(old with { AccessTokenRenewAt = DateTimeOffset.UnixEpoch });
        await StopAsync(device);
        var restarted = DeviceHarness.Create(_mosquitto.Endpoint, "dynsec-renew", _states.Combine("dynsec-renew"), _token, output, o => o.EncryptRequests = true);
        _devices.Add(restarted);
        await restarted.Registration.StartAsync().WaitAsync(Patience);
        var renewed = await restarted.Registration.GetAccessTokenAsync().WaitAsync(Patience);

        Assert.NotEqual(old.AccessToken, renewed);
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await TryConnectAsDeviceAsync(old, old.AccessToken!));
        await using var session = await ConnectAsDeviceAsync(old, renewed);
        Assert.True((await session.PublishAsync(own + "messages/telemetry", "{}")).IsSuccess);
    }

    [Fact]
    public async Task AnAnonymousClientReadingEveryReplyTopic_SeesOnlyCiphertextOfAnotherClientsRegistration()
    {
        await using var eavesdropper = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "eavesdropper");
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await eavesdropper.SubscribeAsync("enroll/v1/clients/+/responses"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await eavesdropper.SubscribeAsync("enroll/v1/devices/+/responses"));

        var (_, victim) = await RegisterAsync("dynsec-victim");
        var seen = await eavesdropper.CollectAsync(Quiet);

        var answer = Assert.Single(seen, m => m.Topic == EnrollTopics.ClientResponses("dynsec-victim"));
        var text = RawMqttClient.Text(answer);
        Assert.Equal(5, text.Split('.').Length); // JWE compact serialisation: header.key.iv.ciphertext.tag
        Assert.All(seen.Select(RawMqttClient.Text), t =>
        {
            Assert.DoesNotContain(victim.AccessToken!, t, StringComparison.Ordinal);
            Assert.DoesNotContain(victim.DeviceId!, t, StringComparison.Ordinal);
            Assert.DoesNotContain("jwt_token", t, StringComparison.Ordinal);
        });
        Assert.DoesNotContain(seen, m => RawMqttClient.Text(m).Contains(victim.RegistrationToken!, StringComparison.Ordinal));
    }

    [Fact]
    public async Task ARegistrationTokenUsedAgainAfterItsRefresh_RevokesTheTokens_AndMosquittoDropsTheDevice()
    {
        var (device, before) = await RegisterAsync("dynsec-reuse");
        await device.Registration.RefreshRegistrationTokenAsync().WaitAsync(Patience);
        await StopAsync(device);
        await using var session = await ConnectAsDeviceAsync(before);

        // Someone replays the refreshed (old) Registration Token: the server revokes the device's tokens.
        var tokens = _server.Host.Services.GetRequiredService<RegistrationTokenService>();
        var reuse = await Assert.ThrowsAsync<RejectedException>(() => tokens.AuthenticateAsync(before.RegistrationToken!, before.DeviceId, before.ClientId, "127.0.0.1", CancellationToken.None));

        Assert.Equal(ErrorCodes.Unauthorized, reuse.Code);
        await Eventually.ReturnsAsync(() => Task.FromResult(session.Client.IsConnected), connected => !connected, TimeSpan.FromSeconds(5), "Mosquitto dropped the device whose tokens were revoked");
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await TryConnectAsDeviceAsync(before, before.AccessToken!));
    }

    [Fact]
    public async Task AServerUserWithoutTheAdminRole_StopsTheStart_SayingWhatToGrant()
    {
        await using var mosquitto = await MosquittoBroker.StartWithDynamicSecurityAsync(ServerUser, ServerPassword, serverIsAdmin: false);

        var refused = await Assert.ThrowsAnyAsync<Exception>(() => TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = mosquitto.Endpoint;
            o.BrokerUsername = ServerUser;
            o.BrokerPassword = ServerPassword;
            o.BrokerAdmin = BrokerAdmin.MosquittoDynamicSecurity;
        }));

        Assert.Contains("dynamic-security admin role", refused.ToString(), StringComparison.Ordinal);
        Assert.Contains(MosquittoDynamicSecurity.ResponseTopic, refused.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheDynamicSecurityAdministrator_WithoutAnExternalBroker_IsRefusedAsAnInvalidOption()
    {
        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, o => o.BrokerAdmin = BrokerAdmin.MosquittoDynamicSecurity));

        Assert.Equal(ServerStartProblem.InvalidOptions, refused.Problem);
        Assert.Contains("needs an external broker", refused.Message, StringComparison.Ordinal);
    }
}

/// <summary>
/// The expiry sweep, on the server's clock (a <see cref="FakeTimeProvider"/> starting now): Mosquitto's plugin knows no
/// expiry, so the server disables a client whose last access token expired without renewal.
/// </summary>
public sealed class MosquittoDynamicSecurityExpiryTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ServerUser = "enroll-server";
    private const string ServerPassword = "server-secret-for-expiry-tests";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan AccessLifetime = TimeSpan.FromHours(1);
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.FromUnixTimeSeconds(TimeProvider.System.GetUtcNow().ToUnixTimeSeconds()));
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
            o.RequireEncryption = true;
            o.BrokerAdmin = BrokerAdmin.MosquittoDynamicSecurity;
            o.AccessTokenLifetime = AccessLifetime;
        }, timeProvider: _clock);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _mosquitto.DisposeAsync();
        _states.Dispose();
    }

    private async Task SweepAtAsync(TimeSpan advance, MosquittoDynamicSecurity dynsec)
    {
        var before = dynsec.SweepsCompleted;
        _clock.Advance(advance);
        await Eventually.ReturnsAsync(() => Task.FromResult(dynsec.SweepsCompleted), n => n > before, Patience, "a sweep finished");
    }

    [Fact]
    public async Task AClientWhoseTokenExpiredWithoutRenewal_IsDisabledByTheSweep_NotBefore()
    {
        var token = (await _server.CreateTokenAsync()).Token!;
        DeviceCredentials credentials;
        await using (var device = DeviceHarness.Create(_mosquitto.Endpoint, "expiring", _states.Combine("expiring"), token, output, o => o.EncryptRequests = true))
        {
            await device.Registration.StartAsync().WaitAsync(Patience);
            credentials = (await device.Store.LoadAsync())!;
        }

        var dynsec = _server.Host.Services.GetRequiredService<MosquittoDynamicSecurity>();
        Task<MqttClientConnectResultCode> Connect() => RawMqttClient.TryConnectAsync(_mosquitto.Endpoint, credentials.ClientId, credentials.DeviceId, credentials.AccessToken);

        // A sweep while the token is current leaves the client alone.
        await SweepAtAsync(MosquittoDynamicSecurity.SweepInterval, dynsec);
        Assert.Equal(MqttClientConnectResultCode.Success, await Connect());

        // The token's expiry passes with no renewal: the next sweep disables the client.
        await SweepAtAsync(AccessLifetime, dynsec);
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await Connect());
    }
}
