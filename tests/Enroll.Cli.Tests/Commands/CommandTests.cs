using System.CommandLine;
using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

public sealed class CommandTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestServer _server = null!;
    private readonly TempDirectory _folder = new();

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _folder.Dispose();
    }

    private string[] Admin(params string[] args) => [.. args, "--server", _server.HttpEndpoint.ToString(), "--admin-key", _server.AdminKey];

    private string[] Device(params string[] args) => [.. args, "--broker", _server.MqttEndpoint.ToString(), "--state", _folder.Combine("device")];

    [Fact]
    public async Task TokensCreateListRevoke_WorkThroughTheHttpApi()
    {
        var created = await CliRunner.RunAsync(Admin("tokens", "create", "--org", "acme", "--auto-approve", "--max-uses", "3", "--expires", "7d", "--json"));
        Assert.Equal(0, created.ExitCode);
        using var token = JsonDocument.Parse(created.Out);
        var id = token.RootElement.GetProperty("id").GetString()!;
        Assert.StartsWith("ept_", token.RootElement.GetProperty("token").GetString(), StringComparison.Ordinal);
        Assert.Equal(3, token.RootElement.GetProperty("max_uses").GetInt32());

        var list = await CliRunner.RunAsync(Admin("tokens", "list"));
        Assert.Equal(0, list.ExitCode);
        Assert.Contains(id, list.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("ept_", list.Out, StringComparison.Ordinal);

        var revoked = await CliRunner.RunAsync(Admin("tokens", "revoke", id, "--json"));
        Assert.Equal(0, revoked.ExitCode);
        using var info = JsonDocument.Parse(revoked.Out);
        Assert.Equal("revoked", info.RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task AdminCommands_WithAWrongKeyOrUnknownId_FailWithOneLineAndAMeaningfulExitCode()
    {
        var wrongKey = await CliRunner.RunAsync("tokens", "list", "--server", _server.HttpEndpoint.ToString(), "--admin-key", "nope");
        Assert.Equal(3, wrongKey.ExitCode);
        Assert.Single(wrongKey.Error.Trim().Split('\n'));
        Assert.Contains("401", wrongKey.Error, StringComparison.Ordinal);

        var unknown = await CliRunner.RunAsync(Admin("tokens", "revoke", "no-such-token"));
        Assert.Equal(3, unknown.ExitCode);

        var unreachable = await CliRunner.RunAsync("tokens", "list", "--server", "http://127.0.0.1:1", "--admin-key", "x");
        Assert.Equal(4, unreachable.ExitCode);

        var badDuration = await CliRunner.RunAsync(Admin("tokens", "create", "--org", "acme", "--expires", "soon"));
        Assert.NotEqual(0, badDuration.ExitCode);
    }

    [Fact]
    public async Task DeviceRegister_ThenAgain_KeepsTheDeviceIdWithoutANewRequest_AndStatusReportsIt()
    {
        var counter = _server.CountRequests();
        var token = await _server.CreateTokenAsync(autoApprove: true);

        var first = await CliRunner.RunAsync(Device("device", "register", "--client-id", "cli-1", "--token", token.Token!, "--json"));
        Assert.Equal(0, first.ExitCode);
        using var identity = JsonDocument.Parse(first.Out);
        var deviceId = identity.RootElement.GetProperty("device_id").GetString()!;
        Assert.False(identity.RootElement.GetProperty("registration_skipped").GetBoolean());

        var second = await CliRunner.RunAsync(Device("device", "register"));
        Assert.Equal(0, second.ExitCode);
        Assert.Contains($"Already registered as {deviceId}", second.Out, StringComparison.Ordinal);
        Assert.Equal(1, counter["enroll/v1/register"]);

        var status = await CliRunner.RunAsync("device", "status", "--state", _folder.Combine("device"), "--json");
        Assert.Equal(0, status.ExitCode);
        using var state = JsonDocument.Parse(status.Out);
        Assert.Equal("registered", state.RootElement.GetProperty("state").GetString());
        Assert.Equal(deviceId, state.RootElement.GetProperty("device_id").GetString());
    }

    [Fact]
    public async Task DeviceRegister_WithAWrongToken_ExitsRefusedWithOneLine()
    {
        var result = await CliRunner.RunAsync(Device("device", "register", "--client-id", "cli-2", "--token", "ept_bogus.token"));

        Assert.Equal(3, result.ExitCode);
        Assert.Contains("unauthorized", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeviceRegister_WithoutAClientIdOrState_IsAUsageError()
    {
        var result = await CliRunner.RunAsync(Device("device", "register", "--token", "ept_x.y"));

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--client-id", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeviceRegister_AgainstNoBroker_ExitsUnreachable()
    {
        var result = await CliRunner.RunAsync("device", "register", "--broker", "mqtt://127.0.0.1:1", "--client-id", "cli-3", "--token", "ept_x.y",
            "--state", _folder.Combine("nobroker"), "--max-attempts", "2", "--attempt-timeout", "1s", "--max-backoff", "1s");

        Assert.Equal(4, result.ExitCode);
    }

    [Fact]
    public async Task DeviceStatus_OfAnEmptyFolder_SaysUnprovisioned()
    {
        var result = await CliRunner.RunAsync("device", "status", "--state", _folder.Combine("empty"));

        Assert.Equal(5, result.ExitCode);
        Assert.Contains("unprovisioned", result.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerHelp_DescribesOnlyWhatTheServerServes()
    {
        var result = await CliRunner.RunAsync("server", "--help");

        Assert.Contains("Port of the HTTP API", result.Out, StringComparison.Ordinal);
        Assert.Contains("web console", result.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EveryCommand_HasHelp()
    {
        var commands = new List<string[]>();
        void Walk(Command command, string[] path)
        {
            commands.Add(path);
            foreach (var child in command.Subcommands)
            {
                Walk(child, [.. path, child.Name]);
            }
        }

        Walk(EnrollCli.Build(), []);
        Assert.True(commands.Count > 15);
        foreach (var path in commands)
        {
            var result = await CliRunner.RunAsync([.. path, "--help"]);
            Assert.True(result.ExitCode == 0, string.Join(' ', path));
            Assert.Contains("Usage:", result.Out, StringComparison.Ordinal);
        }
    }
}
