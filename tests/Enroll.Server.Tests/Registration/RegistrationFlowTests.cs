using Enroll.Device;
using Enroll.Testing;
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
}
