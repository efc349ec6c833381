using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// <c>enroll devices revoke</c> against a server behind an external broker (a real Mosquitto): the server cannot end the
/// device's session there, and the command says so instead of implying it did.
/// </summary>
public sealed class RevokeOnExternalBrokerTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ServerPassword = "server-secret-for-tests";
    private readonly TempDirectory _folder = new();
    private MosquittoBroker _mosquitto = null!;
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _mosquitto = await MosquittoBroker.StartAsync(
            MosquittoBroker.RepositoryFile("deploy/mosquitto/enroll.acl"),
            new Dictionary<string, string> { ["enroll-server"] = ServerPassword });
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
        _folder.Dispose();
    }

    [Fact]
    public async Task DevicesRevoke_OnAnExternalBroker_RevokesAndWarnsThatTheSessionStaysOpen()
    {
        var token = await _server.CreateTokenAsync();
        string deviceId;
        await using (var device = DeviceHarness.Create(_mosquitto.Endpoint, "ext-client", _folder.Combine("device"), token.Token, output))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
        }

        string[] admin = ["--server", _server.HttpEndpoint.ToString(), "--admin-key", _server.AdminKey];
        var revoked = await CliRunner.RunAsync(["devices", "revoke", deviceId, .. admin]);
        var json = await CliRunner.RunAsync(["devices", "revoke", deviceId, "--json", .. admin]);

        Assert.Equal(0, revoked.ExitCode);
        Assert.Contains($"Revoked {deviceId}", revoked.Out, StringComparison.Ordinal);
        Assert.Contains("cannot end", revoked.Error, StringComparison.Ordinal);
        Assert.Contains("external broker", revoked.Error, StringComparison.Ordinal);
        using var info = JsonDocument.Parse(json.Out);
        Assert.Equal("not_supported_by_external_broker", info.RootElement.GetProperty("disconnect").GetString());
    }
}
