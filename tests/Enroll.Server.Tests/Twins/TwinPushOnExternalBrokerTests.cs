using System.Text;
using System.Text.Json;
using Enroll.Protocol.Json;
using Enroll.Protocol.Topics;
using Enroll.Protocol.Access;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Twins;

/// <summary>The desired push through an external broker (a real Mosquitto with the deployed ACL).</summary>
public sealed class TwinPushOnExternalBrokerTests(ITestOutputHelper output) : IAsyncLifetime
{
    private MosquittoBroker _mosquitto = null!;
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync()
    {
        // No password file: Mosquitto takes the user name as given; the ACL's %u patterns confine each device to its namespace.
        _mosquitto = await MosquittoBroker.StartAsync(acl: MosquittoAcl.Render());
        _server = await TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = _mosquitto.Endpoint;
            o.BrokerPassword = "unchecked-here";
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _mosquitto.DisposeAsync();
        _states.Dispose();
    }

    [Fact]
    public async Task DesiredPatch_IsPushedThroughTheExternalBroker_ToTheDeviceSubscribedThere()
    {
        var token = await _server.CreateTokenAsync();
        string deviceId;
        await using (var device = DeviceHarness.Create(_mosquitto.Endpoint, "ext-twin", _states.Combine("ext-twin"), token.Token, output, o => o.MaxAttempts = 50))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
        }

        await using var mqtt = await RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "ext-twin-raw", deviceId, "access-token");
        await mqtt.SubscribeAsync(EnrollTopics.DeviceTwinDesired(deviceId));

        using var response = await _server.Http.PatchAsync($"/api/devices/{deviceId}/twin/desired", new StringContent("""{"interval":15}""", Encoding.UTF8, "application/merge-patch+json"));

        response.EnsureSuccessStatusCode();
        var message = await mqtt.ReceiveAsync();
        Assert.Equal(EnrollTopics.DeviceTwinDesired(deviceId), message.Topic);
        var pushed = JsonSerializer.Deserialize(RawMqttClient.Text(message), EnrollJsonContext.Default.TwinDesiredPatch)!;
        Assert.Equal(1, pushed.Version);
        Assert.Equal(15, pushed.Patch!["interval"]!.GetValue<int>());
    }
}
