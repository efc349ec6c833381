using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Enroll.Reliability.Tests.Harness;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.FaultMatrix;

/// <summary>
/// The device process killed (SIGKILL, no shutdown) while the operator patches its twin: the next agent on the same
/// state folder applies every version it missed, in order, none twice — the applied version is persisted with the
/// document — and ends with the server's desired document.
/// </summary>
public sealed partial class TwinProcessKillTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [GeneratedRegex(@"Applied desired version (\d+)")]
    private static partial Regex AppliedLine();

    [Fact]
    public async Task AgentKilledWhileTheOperatorPatches_NextAgentAppliesEveryMissedVersionInOrderOnce_AndEndsInTheServersState()
    {
        await using var server = await TestServer.StartAsync();
        await using var run = new FaultRun("twin_process_killed", output);
        var deviceId = await run.RegisterAsync(server.MqttEndpoint, (await server.CreateTokenAsync()).Token!);

        var first = await run.StartAgentAsync(server.MqttEndpoint, null, null, "--verbose");
        await PatchDesiredAsync(server, deviceId, """{"interval":10}""");
        await Eventually.ReturnsAsync(() => Task.FromResult(Applied(first)), a => a.Contains(1), Patience, "the first agent applied version 1");
        using (var process = Process.GetProcessById(first.Pid))
        {
            process.Kill();
            await process.WaitForExitAsync();
        }

        await PatchDesiredAsync(server, deviceId, """{"interval":20}""");
        await PatchDesiredAsync(server, deviceId, """{"mode":"eco","interval":null}""");
        await PatchDesiredAsync(server, deviceId, """{"led":true}""");

        var second = await run.StartAgentAsync(server.MqttEndpoint, null, null, "--verbose");
        await Eventually.ReturnsAsync(() => Task.FromResult(Applied(second)), a => a.Contains(4), Patience, "the second agent applied version 4");
        var applied = Applied(first).Concat(Applied(second)).ToList();
        output.WriteLine($"applied across a SIGKILL: [{string.Join(",", applied)}]");
        Assert.Equal([1L, 2L, 3L, 4L], applied);

        var shown = await EnrollProcess.RunAsync(["device", "twin", "--state", run.StatePath, "--json"]);
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var local = JsonNode.Parse(shown.StandardOutput)!;
        var onServer = JsonNode.Parse(await server.Http.GetStringAsync(new Uri($"/api/devices/{deviceId}/twin", UriKind.Relative)))!;
        Assert.Equal(4, local["desired_version"]!.GetValue<long>());
        Assert.True(JsonNode.DeepEquals(onServer["desired"], local["desired"]), $"device {local["desired"]?.ToJsonString()} server {onServer["desired"]?.ToJsonString()}");
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"mode":"eco","led":true}"""), local["desired"]));
    }

    private static List<long> Applied(RunningAgent agent) =>
        [.. agent.Lines.Select(line => AppliedLine().Match(line)).Where(m => m.Success).Select(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))];

    private static async Task PatchDesiredAsync(TestServer server, string deviceId, string patch)
    {
        using var request = new HttpRequestMessage(HttpMethod.Patch, $"/api/devices/{deviceId}/twin/desired")
        {
            Content = new StringContent(patch, Encoding.UTF8, "application/merge-patch+json"),
        };
        using var response = await server.Http.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"PATCH desired answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }
}
