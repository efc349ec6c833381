using System.Diagnostics;
using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Configuration;

/// <summary>
/// The agent built normally (not published), configured by a file alone, as a packaged service is: it registers with
/// the token file the file names, sends with <c>deliver</c> from the file, and <c>enroll-agent run</c> with no flag at
/// all delivers what was stored while it was not running, against a real local server.
/// </summary>
public sealed class AgentWithConfigFileTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task RegistersSendsAndRuns_WithOnlyAConfigurationFile()
    {
        await using var server = await TestServer.StartAsync(output);
        using var folder = new TempDirectory("agent-config-run");
        var token = await server.CreateTokenAsync();
        var tokenFile = folder.Combine("provisioning-token");
        await File.WriteAllTextAsync(tokenFile, token.Token + "\n");
        var config = folder.Combine("agent.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["broker"] = server.MqttEndpoint.ToString(),
            ["clientId"] = "config-only-1",
            ["tokenFile"] = tokenFile,
            ["state"] = folder.Combine("state"),
            ["deliver"] = true,
            ["logFormat"] = "json",
        }));
        var environment = new Dictionary<string, string> { ["ENROLL_AGENT_CONFIG"] = config };

        var registered = await AgentProcess.RunAsync(Step, environment, "register", "--json");
        Assert.True(registered.ExitCode == 0, registered.Error);
        var deviceId = JsonDocument.Parse(registered.Out).RootElement.GetProperty("device_id").GetString()!;
        Assert.Equal("config-only-1", (await server.GetDeviceAsync(deviceId)).ClientId);

        // "deliver": true in the file: send returns once the server has the message.
        var sent = await AgentProcess.RunAsync(Step, environment, "send", "--stream", "telemetry", "--data", """{"n":1}""");
        Assert.True(sent.ExitCode == 0, sent.Error);
        Assert.Equal(1, await server.CountMessagesAsync(deviceId));

        // A flag wins over the file: stored only, for the agent to deliver.
        var stored = await AgentProcess.RunAsync(Step, environment, "send", "--stream", "telemetry", "--data", """{"n":2}""", "--deliver", "false");
        Assert.True(stored.ExitCode == 0, stored.Error);
        Assert.Equal(1, await server.CountMessagesAsync(deviceId));

        using var agent = Process.Start(AgentProcess.StartInfo(environment, "run"))!;
        var log = agent.StandardError.ReadToEndAsync();
        try
        {
            await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 2 || agent.HasExited, Step, "the agent delivering the stored message");
            Assert.False(agent.HasExited, $"enroll-agent run ended by itself: {(agent.HasExited ? await log : string.Empty)}");
        }
        finally
        {
            // SIGTERM: the agent stops as a service manager stops it.
            using (var kill = Process.Start("kill", ["-TERM", agent.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
            {
                await kill.WaitForExitAsync();
            }

            await agent.WaitForExitAsync().WaitAsync(Step);
        }

        output.WriteLine(await log);
        Assert.Equal(0, agent.ExitCode);
        var messages = await server.MessagesAsync(deviceId);
        Assert.Equal(new[] { """{"n":1}""", """{"n":2}""" }, messages.Select(m => System.Text.Encoding.UTF8.GetString(m.Payload.Span)).ToArray());
    }
}
