using System.Collections.Concurrent;
using System.Text;
using Enroll.Device;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Server.Broker;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

public sealed class EncryptionTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task EncryptingDevice_RegistersAndRefreshes_WhileTheBrokerSeesNoSecretInClear()
    {
        await using var server = await TestServer.StartAsync(output);
        var wire = Capture(server);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "sealed-1", state.Path, token.Token, output, o =>
        {
            o.EncryptRequests = true;
            o.DeviceName = "Boiler room gateway";
        });

        var identity = await device.Registration.StartAsync().WaitAsync(Patience);
        await device.Registration.RefreshRegistrationTokenAsync().WaitAsync(Patience);
        var stored = await device.Store.LoadAsync();

        Assert.StartsWith("dev_", identity.DeviceId, StringComparison.Ordinal);
        var everything = string.Join('\n', wire);
        Assert.Contains("enroll/v1/register", everything, StringComparison.Ordinal);
        foreach (var secret in new[] { token.Token!, stored!.AccessToken!, stored.RegistrationToken!, "jwt_token", "registration_token", "provisioning_token", "Boiler room", "memory_total" })
        {
            Assert.DoesNotContain(secret, everything, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Server_RequiringEncryption_RefusesPlaintextButServesEncryptingDevices()
    {
        await using var server = await TestServer.StartAsync(output, o => o.RequireEncryption = true);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var states = new TempDirectory();

        await using var plain = DeviceHarness.Create(server.MqttEndpoint, "plain-1", states.Combine("plain"), token.Token, output);
        var error = await Assert.ThrowsAsync<EnrollServerException>(() => plain.Registration.StartAsync().WaitAsync(Patience));
        Assert.Equal(ErrorCodes.InvalidRequest, error.Code);
        Assert.Contains("only encrypted requests", error.Message, StringComparison.Ordinal);

        await using var sealedDevice = DeviceHarness.Create(server.MqttEndpoint, "sealed-2", states.Combine("sealed"), token.Token, output, o => o.EncryptRequests = true);
        Assert.StartsWith("dev_", (await sealedDevice.Registration.StartAsync().WaitAsync(Patience)).DeviceId, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KeyRotation_OldKeyAcceptedDuringOverlap_AndAfterItIsRetiredTheDeviceFetchesTheNewOne()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "rotating-1", state.Path, token.Token, output, o => o.EncryptRequests = true);
        await device.Registration.StartAsync().WaitAsync(Patience);

        // One rotation: the device still encrypts to the previous key, which the server keeps accepting.
        (await server.Http.PostAsync("/api/keys/rotate", null)).EnsureSuccessStatusCode();
        await device.Registration.RefreshRegistrationTokenAsync().WaitAsync(Patience);

        // Three more: the device's key is retired; the server says so and the device fetches the current key set.
        for (var i = 0; i < 3; i++)
        {
            (await server.Http.PostAsync("/api/keys/rotate", null)).EnsureSuccessStatusCode();
        }

        var before = (await device.Store.LoadAsync())!.RegistrationToken;
        await device.Registration.RefreshRegistrationTokenAsync().WaitAsync(Patience);
        Assert.NotEqual(before, (await device.Store.LoadAsync())!.RegistrationToken);
    }

    [Fact]
    public async Task TamperedEnvelope_IsRefusedAsInvalidRequest()
    {
        await using var server = await TestServer.StartAsync(output);
        await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "tamper-1");
        await client.SubscribeAsync(EnrollTopics.ClientResponses("tamper-1"));
        var keys = ServerEncryptionKey.Of(server);
        var sealedRequest = Enroll.Protocol.Encryption.JweEnvelope.SealRequest("""{"client_id":"tamper-1"}"""u8, keys.Key, keys.KeyId);
        var parts = sealedRequest.Compact.Split('.');
        parts[3] = parts[3].Length > 2 ? (parts[3][0] == 'A' ? "B" : "A") + parts[3][1..] : parts[3];

        await client.PublishAsync(EnrollTopics.Register, string.Join('.', parts), EnrollTopics.ClientResponses("tamper-1"));

        var answer = RawMqttClient.Text(await client.ReceiveAsync());
        Assert.Contains("\"invalid_request\"", answer, StringComparison.Ordinal);
        Assert.Contains("cannot decrypt", answer, StringComparison.Ordinal);
    }

    /// <summary>Records every payload that crosses the broker, in both directions.</summary>
    private static ConcurrentQueue<string> Capture(TestServer server)
    {
        var wire = new ConcurrentQueue<string>();
        var broker = server.Host.Services.GetRequiredService<EmbeddedBroker>();
        broker.Server.InterceptingPublishAsync += e =>
        {
            wire.Enqueue($"{e.ApplicationMessage.Topic} {Encoding.UTF8.GetString(e.ApplicationMessage.Payload)}");
            return Task.CompletedTask;
        };
        return wire;
    }
}
