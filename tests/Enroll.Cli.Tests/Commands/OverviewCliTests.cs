using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll overview</c> against a real server with a real device.</summary>
public sealed class OverviewCliTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Overview_ShowsTheDevices_AndTheLastHour_AsTextAndJson()
    {
        await using var server = await TestServer.StartAsync(output);
        string[] Admin(params string[] args) => [.. args, "--server", server.HttpEndpoint.ToString(), "--admin-key", server.AdminKey];
        var token = await server.CreateTokenAsync();
        using var state = new TempDirectory();
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "gw-cli-overview", state.Path, token.Token, output))
        {
            await device.Registration.StartAsync().WaitAsync(Patience);
        }

        var text = await CliRunner.RunAsync(Admin("overview"));
        Assert.Equal(0, text.ExitCode);
        Assert.Contains("Devices: 1 (1 active); pending operations: 0", text.Out, StringComparison.Ordinal);
        Assert.Contains("Registrations", text.Out, StringComparison.Ordinal);
        Assert.Contains("No device has reported an outbox.", text.Out, StringComparison.Ordinal);

        var json = await CliRunner.RunAsync(Admin("overview", "--json"));
        Assert.Equal(0, json.ExitCode);
        using var overview = JsonDocument.Parse(json.Out);
        Assert.Equal(1, overview.RootElement.GetProperty("devices_by_status").GetProperty("active").GetInt64());
        Assert.Equal(60, overview.RootElement.GetProperty("registrations").GetProperty("counts").GetArrayLength());
        Assert.Equal(1, overview.RootElement.GetProperty("registrations").GetProperty("counts").EnumerateArray().Sum(c => c.GetInt64()));
    }
}
