using System.Text.Json;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll commands ...</c> against a real server, with a raw MQTT client answering as the device.</summary>
public sealed class CommandsCommandTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestServer _server = null!;
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
    }

    private string[] Admin(params string[] args) => [.. args, "--server", _server.HttpEndpoint.ToString(), "--admin-key", _server.AdminKey];

    private async Task<(string DeviceId, string AccessToken)> RegisterAsync(string clientId)
    {
        var token = await _server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _states.Combine(clientId), token.Token, output);
        var identity = await device.Registration.StartAsync();
        return (identity.DeviceId, (await device.Store.LoadAsync())!.AccessToken!);
    }

    /// <summary>Connects as the device and answers the first command it gets with <paramref name="answer"/> (status, payload, message as JSON members).</summary>
    private async Task<(RawMqttClient Client, Task Answered)> AnsweringDeviceAsync(string clientId, (string DeviceId, string AccessToken) identity, string answer)
    {
        var client = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, clientId, identity.DeviceId, identity.AccessToken);
        await client.SubscribeAsync(EnrollTopics.DeviceCommands(identity.DeviceId));
        async Task AnswerAsync()
        {
            var command = await client.ReceiveAsync(TimeSpan.FromSeconds(30));
            using var json = JsonDocument.Parse(RawMqttClient.Text(command));
            var id = json.RootElement.GetProperty("command_id").GetString();
            await client.PublishAsync(
                $"enroll/v1/devices/{identity.DeviceId}/commands/result",
                $$"""{"command_id":"{{id}}",{{answer}}}""",
                EnrollTopics.DeviceResponses(identity.DeviceId),
                [1]);
        }

        return (client, AnswerAsync());
    }

    [Fact]
    public async Task SendWithWait_PrintsTheResult_AndExitsZero_WhenTheCommandSucceeded()
    {
        var identity = await RegisterAsync("cli-ok");
        var (client, answered) = await AnsweringDeviceAsync("cli-ok", identity, """ "status":"succeeded","payload":{"uptime":42} """);
        await using var _ = client;

        var (exit, stdout, stderr) = await CliRunner.RunAsync(Admin("commands", "send", identity.DeviceId, "uptime", "--payload", """{"unit":"s"}""", "--ttl", "5m", "--wait", "30s"));
        await answered;

        Assert.Equal(0, exit);
        Assert.Equal(string.Empty, stderr);
        Assert.Equal(42, JsonDocument.Parse(stdout).RootElement.GetProperty("uptime").GetInt32());
    }

    [Fact]
    public async Task SendWithWait_ExitsSeven_WithOneLine_WhenTheCommandFailed()
    {
        var identity = await RegisterAsync("cli-fail");
        var (client, answered) = await AnsweringDeviceAsync("cli-fail", identity, """ "status":"failed","message":"disk full" """);
        await using var _ = client;

        var (exit, stdout, stderr) = await CliRunner.RunAsync(Admin("commands", "send", identity.DeviceId, "cleanup", "--wait", "30s", "--json"));
        await answered;

        Assert.Equal(7, exit);
        Assert.Equal("failed", JsonDocument.Parse(stdout).RootElement.GetProperty("state").GetString());
        Assert.Single(stderr.TrimEnd().Split('\n'));
        Assert.Contains("failed: disk full", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendWithWait_ToAnOfflineDevice_ExitsFour_SayingItIsStillQueued()
    {
        var identity = await RegisterAsync("cli-offline");

        var (exit, _, stderr) = await CliRunner.RunAsync(Admin("commands", "send", identity.DeviceId, "reboot", "--wait", "1s"));

        Assert.Equal(4, exit);
        Assert.StartsWith("enroll: no result from device", stderr, StringComparison.Ordinal);
        Assert.Contains("is queued", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendListShowCancel_WorkThroughTheHttpApi_AndCancelingTwiceIsRefused()
    {
        var identity = await RegisterAsync("cli-list");

        var sent = await CliRunner.RunAsync(Admin("commands", "send", identity.DeviceId, "reboot", "--json"));
        var id = JsonDocument.Parse(sent.Out).RootElement.GetProperty("command_id").GetString()!;
        var list = await CliRunner.RunAsync(Admin("commands", "list", "--device", identity.DeviceId, "--status", "queued", "--json"));
        var table = await CliRunner.RunAsync(Admin("commands", "list"));
        var shown = await CliRunner.RunAsync(Admin("commands", "show", id));
        var canceled = await CliRunner.RunAsync(Admin("commands", "cancel", id, "--json"));
        var again = await CliRunner.RunAsync(Admin("commands", "cancel", id));
        var unknown = await CliRunner.RunAsync(Admin("commands", "show", "cmd_nobody"));

        Assert.Equal(0, sent.ExitCode);
        Assert.Equal([id], JsonDocument.Parse(list.Out).RootElement.GetProperty("items").EnumerateArray().Select(c => c.GetProperty("command_id").GetString()));
        Assert.Contains(id, table.Out, StringComparison.Ordinal);
        Assert.Contains("queued", shown.Out, StringComparison.Ordinal);
        Assert.Equal("canceled", JsonDocument.Parse(canceled.Out).RootElement.GetProperty("state").GetString());
        Assert.Equal(3, again.ExitCode);
        Assert.Contains("already canceled", again.Error, StringComparison.Ordinal);
        Assert.Equal(3, unknown.ExitCode);
    }

    [Theory]
    [InlineData("--payload", "{not json")]
    [InlineData("--ttl", "8d")]
    [InlineData("--wait", "10m")]
    public async Task Send_WithABadOption_IsAUsageError(string option, string value)
    {
        var (exit, _, stderr) = await CliRunner.RunAsync(Admin("commands", "send", "dev_x", "reboot", option, value));

        Assert.Equal(2, exit);
        Assert.Contains(option, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Send_ToAnUnknownDevice_IsRefused()
    {
        var (exit, _, stderr) = await CliRunner.RunAsync(Admin("commands", "send", "dev_nobody", "reboot"));

        Assert.Equal(3, exit);
        Assert.Contains("no device 'dev_nobody'", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendToAnOrg_PrintsProgressUntilDone_AndExitsZeroWhenEveryDeviceSucceeded()
    {
        var first = await RegisterAsync("cli-fleet-1");
        var second = await RegisterAsync("cli-fleet-2");
        var (client1, answered1) = await AnsweringDeviceAsync("cli-fleet-1", first, """ "status":"succeeded" """);
        var (client2, answered2) = await AnsweringDeviceAsync("cli-fleet-2", second, """ "status":"succeeded" """);
        await using var _ = client1;
        await using var __ = client2;

        var (exit, stdout, stderr) = await CliRunner.RunAsync(Admin("commands", "send", "--org", "test-org", "ping", "--rate", "600/min", "--ttl", "5m"));
        await Task.WhenAll(answered1, answered2);

        Assert.Equal(0, exit);
        Assert.Equal(string.Empty, stderr);
        Assert.Contains("ping to 2 devices of test-org at 600/min", stdout, StringComparison.Ordinal);
        Assert.Contains("2/2 queued: 0 waiting, 2 succeeded", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--where", "site")]
    [InlineData("--rate", "fast")]
    public async Task SendToAnOrg_WithABadOption_IsAUsageError(string option, string value)
    {
        var (exit, _, stderr) = await CliRunner.RunAsync(Admin("commands", "send", "--org", "test-org", "ping", option, value));

        Assert.Equal(2, exit);
        Assert.Contains(option, stderr, StringComparison.Ordinal);
    }
}
