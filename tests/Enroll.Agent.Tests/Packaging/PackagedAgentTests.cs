using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Agent.Tests.Infrastructure;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Packaging;

/// <summary>
/// The binary the amd64 package installs, run from a tree <c>dpkg-deb -x</c> extracted (through its /usr/bin link)
/// against a real local server, configured only by its configuration file, as the unit runs it.
/// </summary>
[Collection(SerialBuilds.Name)]
public sealed class PackagedAgentTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task ExtractedPackage_RegistersWithAToken_DeliversAMessage_AndRunsAsANotifyService()
    {
        var deb = await DebianPackages.BuildAsync("amd64", output);
        using var tree = new TempDirectory("enroll-deb-run");
        await DebianPackages.DpkgDebAsync("--extract", deb, tree.Combine("root"));
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync();

        // Everything the agent needs is in its configuration file: no flags.
        var config = await AgentExecutable.WriteConfigAsync(tree.Combine("agent.json"), new JsonObject
        {
            ["broker"] = server.MqttEndpoint.ToString(),
            ["clientId"] = "packaged-amd64",
            ["token"] = token.Token,
            ["state"] = tree.Combine("state"),
        });
        var agent = new AgentExecutable(tree.Combine("root", "usr", "bin", "enroll-agent"), config);

        var registered = await agent.RunAsync(Step, "register", "--json");
        Assert.True(registered.ExitCode == 0, $"enroll-agent register: {registered}");
        var deviceId = JsonDocument.Parse(registered.StandardOutput).RootElement.GetProperty("device_id").GetString()!;
        Assert.Equal("active", (await server.GetDeviceAsync(deviceId)).Status);

        var sent = await agent.RunAsync(Step, "send", "--stream", "telemetry", "--data", """{"from":"package"}""", "--deliver");
        Assert.True(sent.ExitCode == 0, $"enroll-agent send --deliver: {sent}");
        var message = Assert.Single(await server.MessagesAsync(deviceId));
        Assert.Equal("telemetry", message.Stream);
        Assert.Equal("package", JsonDocument.Parse(message.Payload).RootElement.GetProperty("from").GetString());

        // As the unit starts it: `enroll-agent run`, with systemd's notification socket. READY=1 once it runs, a clean
        // exit (0) with STOPPING=1 on SIGTERM, as `systemctl stop` sends it.
        using var notify = new NotifySocket(tree.Combine("notify"));
        await using var run = AgentProcess.Start(agent, output, "run", new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Path }, "run");
        Assert.Contains("READY=1", await notify.ReceiveAsync(Step), StringComparison.Ordinal);
        Assert.Equal(0, await run.TerminateAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("STOPPING=1", await notify.ReceiveAsync(TimeSpan.FromSeconds(5)), StringComparison.Ordinal);
    }
}
