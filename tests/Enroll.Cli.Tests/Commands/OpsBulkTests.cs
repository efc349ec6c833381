using System.Text.Json;
using Enroll.Device;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll ops approve|reject</c> in the bulk form (a filter instead of an ID), against a real server.</summary>
public sealed class OpsBulkTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task BulkApprove_ByOrg_WithYes_ApprovesTheMatchingPendingOperations_AndTheDeviceRegisters()
    {
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromHours(1));
        string[] Admin(params string[] args) => [.. args, "--server", server.HttpEndpoint.ToString(), "--admin-key", server.AdminKey];
        var token = await server.CreateTokenAsync(orgId: "acme", autoApprove: false);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-cli-bulk", state.Path, token.Token, output);
        var start = device.Registration.StartAsync();
        await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience);

        var none = await CliRunner.RunAsync(Admin("ops", "approve", "--org", "other", "--yes"));
        Assert.Equal(0, none.ExitCode);
        Assert.Contains("No pending operations match", none.Out, StringComparison.Ordinal);

        var both = await CliRunner.RunAsync(Admin("ops", "approve", "op_x", "--org", "acme"));
        Assert.Equal(2, both.ExitCode);

        var reject = await CliRunner.RunAsync(Admin("ops", "reject", "--org", "acme", "--yes"));
        Assert.Equal(2, reject.ExitCode);
        Assert.Contains("--reason", reject.Error, StringComparison.Ordinal);

        var approved = await CliRunner.RunAsync(Admin("ops", "approve", "--org", "acme", "--token", token.Id, "--yes", "--json"));
        Assert.Equal(0, approved.ExitCode);
        using var result = JsonDocument.Parse(approved.Out);
        Assert.Equal(1, result.RootElement.GetProperty("matched").GetInt32());
        Assert.Equal(1, result.RootElement.GetProperty("decided").GetInt32());
        await start.WaitAsync(Patience);
        Assert.Empty(await server.ListOperationsAsync("pending"));
    }
}
