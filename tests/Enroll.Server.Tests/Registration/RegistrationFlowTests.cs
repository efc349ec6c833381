using Enroll.Device;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using MQTTnet.Packets;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Registration;

public sealed class RegistrationFlowTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Register_NewClientWithAutoApproveToken_GetsDeviceIdAndStoresIt()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();

        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "sensor-1", state.Path, token.Token, output))
        {
            var identity = await device.Registration.StartAsync();

            Assert.StartsWith("dev_", identity.DeviceId, StringComparison.Ordinal);
            Assert.False(identity.RegistrationSkipped);
            Assert.Equal(DeviceState.Registered, device.Registration.Status.State);
            var stored = await device.Store.LoadAsync();
            Assert.Equal(identity.DeviceId, stored!.DeviceId);
            Assert.Equal("test-org", stored.OrgId);
        }

        var devices = await server.ListDevicesAsync();
        Assert.Equal("sensor-1", Assert.Single(devices).ClientId);
    }

    [Fact]
    public async Task Register_AsksForItsAnswersAndTheServerKeysInOneSubscribe_AndKeepsTheKeys()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        var packets = ServerTestKit.CaptureInbound(server, "sensor-2");

        await using var device = DeviceHarness.Create(server.MqttEndpoint, "sensor-2", state.Path, token.Token, output);
        await device.Registration.StartAsync();

        // One SUBSCRIBE before the request, for the answer and the retained key set that checks the answer's tokens;
        // the keys arrive with the answer, so no second subscription and no unsubscription afterwards.
        var subscribe = Assert.Single(packets.OfType<MqttSubscribePacket>());
        Assert.Equal(
            [EnrollTopics.ClientResponses("sensor-2"), EnrollTopics.ServerKeys],
            subscribe.TopicFilters.Select(f => f.Topic).Order(StringComparer.Ordinal));
        Assert.Empty(packets.OfType<MqttUnsubscribePacket>());
        Assert.NotNull((await device.Store.LoadAsync())!.ServerKeys);
    }

    [Fact]
    public async Task Register_WhenTheAnswersTokensAreNotSignedByTheTrustedKeys_RefusesThemAndStoresNothing()
    {
        // The device trusts another server's keys (as if this server were an impostor answering in its place).
        await using var trusted = await TestServer.StartAsync(output);
        await using var impostor = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var keys = Path.Combine(state.Path, "trusted-keys.json");
        await File.WriteAllTextAsync(keys, await trusted.Http.GetStringAsync(new Uri(trusted.HttpEndpoint, "/.well-known/jwks.json")));
        var token = await impostor.CreateTokenAsync(autoApprove: true);
        await using var device = DeviceHarness.Create(impostor.MqttEndpoint, "sensor-3", state.Path, token.Token, output, o => o.ServerKeysPath = keys);

        var error = await Assert.ThrowsAsync<EnrollProtocolException>(() => device.Registration.StartAsync());

        Assert.Contains("failed validation", error.Message, StringComparison.Ordinal);
        Assert.Null((await device.Store.LoadAsync())?.AccessToken);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Register_WithoutAnyCredential_WorksOnlyWithOpenRegistration(bool open)
    {
        await using var server = await TestServer.StartAsync(output, o => o.OpenRegistration = open);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "trusted-lan-1", state.Path, provisioningToken: null, output);

        if (open)
        {
            var identity = await device.Registration.StartAsync();
            Assert.Equal("default", (await server.ListDevicesAsync()).Single(d => d.DeviceId == identity.DeviceId).OrgId);
        }
        else
        {
            var error = await Assert.ThrowsAsync<EnrollServerException>(() => device.Registration.StartAsync());
            Assert.Equal(Enroll.Protocol.ErrorCodes.Unauthorized, error.Code);
            Assert.Empty(await server.ListDevicesAsync());
        }
    }

    [Fact]
    public async Task Register_RequestExpiresWhenTheAttemptStopsWaiting()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        var packets = ServerTestKit.CaptureInbound(server, "sensor-4");

        await using var device = DeviceHarness.Create(server.MqttEndpoint, "sensor-4", state.Path, token.Token, output, o => o.AttemptTimeout = TimeSpan.FromSeconds(7));
        await device.Registration.StartAsync();

        // What is left of the 7 s attempt when the request goes out, rounded up: a server that finds it older drops it.
        var request = Assert.Single(packets.OfType<MqttPublishPacket>(), p => p.Topic == EnrollTopics.Register);
        Assert.InRange(request.MessageExpiryInterval, 1u, 7u);
    }
}
