using Enroll.Device.Connection;
using Enroll.Device.Requests;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Requests;

/// <summary>
/// Device-scoped requests through <see cref="ServerRequestSender"/> on a real server: sent to the topic of the Device ID
/// the connection is authenticated as, answered on that device's response topic; never sent anonymously, and a refused
/// access token is not retried as an anonymous connection.
/// </summary>
public sealed class DeviceScopedRequestTests(ITestOutputHelper output)
{
    private static (ServerRequestSender Sender, MqttDeviceConnection Connection) Sender(Uri broker, string clientId)
    {
        var options = Options.Create(new EnrollDeviceOptions
        {
            Broker = broker,
            ClientId = clientId,
            StatePath = "unused",
            AttemptTimeout = TimeSpan.FromSeconds(5),
            MaxAttempts = 2,
            InitialBackoff = TimeSpan.FromMilliseconds(50),
            MaxBackoff = TimeSpan.FromMilliseconds(200),
        });
        var connection = new MqttDeviceConnection(options, NullLogger<MqttDeviceConnection>.Instance);
        return (new ServerRequestSender(new RequestChannel(connection), options, TimeProvider.System, NullLogger<ServerRequestSender>.Instance), connection);
    }

    [Fact]
    public async Task TwinGet_AsTheDevice_GoesToItsOwnTopic_AndIsAnsweredOnItsResponseTopic()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "scoped-1", state.Path, (await server.CreateTokenAsync()).Token, output);
        var identity = await device.Registration.StartAsync();
        var credentials = ConnectionCredentials.AsDevice("scoped-1", identity.DeviceId, device.Registration.CurrentCredentials!.AccessToken!);
        await device.Registration.StopAsync();
        await new TwinDesk(server).PatchDesiredAsync(identity.DeviceId, """{"a":1}""", push: false);
        var published = server.CountRequests();

        var (sender, connection) = Sender(server.MqttEndpoint, "scoped-1");
        await using var _ = connection;
        var answer = await sender.SendAsync(EnrollRequests.TwinGet, id => new TwinGetRequest { DesiredVersion = 0, RequestId = id }, () => credentials, _ => "ignored/for/device/scoped", null, CancellationToken.None);

        Assert.Equal(1, answer.DesiredVersion);
        Assert.Equal(1, Assert.Single(answer.Patches!).Version);
        Assert.Equal(1, published[$"enroll/v1/devices/{identity.DeviceId}/twin/get"]);
    }

    [Fact]
    public async Task DeviceScopedRequest_IsNeverSentAnonymously_NorRetriedAnonymouslyAfterTheTokenWasRefused()
    {
        await using var server = await TestServer.StartAsync(output);
        var published = server.CountRequests();
        var (sender, connection) = Sender(server.MqttEndpoint, "scoped-2");
        await using var _ = connection;

        await Assert.ThrowsAsync<InvalidOperationException>(() => sender.SendAsync(
            EnrollRequests.TwinGet, id => new TwinGetRequest { RequestId = id }, () => ConnectionCredentials.Anonymous("scoped-2"), _ => "x", null, CancellationToken.None));

        var refused = await Assert.ThrowsAnyAsync<EnrollException>(() => sender.SendAsync(
            EnrollRequests.TwinGet, id => new TwinGetRequest { RequestId = id }, () => ConnectionCredentials.AsDevice("scoped-2", "dev_nobody", "not-a-token"), _ => "x", null, CancellationToken.None));
        output.WriteLine(refused.ToString());
        // An anonymous fallback would have left the connection on anonymous credentials.
        Assert.True(connection.Credentials is { IsAuthenticated: true, Username: "dev_nobody" });
        Assert.Equal(0, published["enroll/v1/devices/dev_nobody/twin/get"]);
    }
}
