using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Messages;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// The device side of twins and commands from the command line, against a real server: <c>enroll device run
/// --command-handler PROGRAM</c> with a shell script as PROGRAM (success, failure, plain-text output), and
/// <c>enroll device report</c> / <c>enroll device twin</c> without a running agent.
/// </summary>
public sealed class DeviceManagementCliTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private const string Script = """
        #!/bin/sh
        payload=$(cat)
        case "$1" in
          echo) printf '{"got":%s,"id":"%s"}' "$payload" "$ENROLL_COMMAND_ID" ;;
          words) echo "plain words" ;;
          fail) echo "the disk is on fire" >&2; exit 3 ;;
          hang) echo $$ > "$HANDLER_PID_FILE"; exec sleep 60 ;;
          *) echo "unknown $1" >&2; exit 64 ;;
        esac
        """;

    private static async Task<string> RegisterAsync(TestServer server, string clientId, string state)
    {
        var token = await server.CreateTokenAsync();
        var registered = await CliRunner.RunAsync("device", "register", "--broker", server.MqttEndpoint.ToString(), "--client-id", clientId, "--token", token.Token!, "--state", state, "--json");
        Assert.Equal(0, registered.ExitCode);
        using var identity = JsonDocument.Parse(registered.Out);
        return identity.RootElement.GetProperty("device_id").GetString()!;
    }

    private static DeviceCommand Command(string id, string name, JsonNode? payload = null, TimeSpan? ttl = null) =>
        new() { CommandId = id, Name = name, Payload = payload, ExpiresAt = DateTimeOffset.UtcNow + (ttl ?? TimeSpan.FromMinutes(5)) };

    [Fact]
    public async Task RunWithCommandHandler_ExitZeroSucceedsWithStdoutAsTheResult_NonZeroFailsWithStderrAsTheMessage_AHangingProgramIsKilledAtTheExpiry()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new CommandDesk(server);
        using var state = new TempDirectory();
        var deviceId = await RegisterAsync(server, "cli-handler-1", state.Path);
        var script = Path.Combine(state.Path, "..", $"handler-{Guid.NewGuid():N}.sh");
        await File.WriteAllTextAsync(script, Script.Replace("\r\n", "\n", StringComparison.Ordinal) + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        // Queued while the agent is not running: delivered when it connects and asks for its pending commands.
        desk.Queue(deviceId, Command("c-echo", "echo", new JsonObject { ["n"] = 7 }));
        desk.Queue(deviceId, Command("c-words", "words"));
        desk.Queue(deviceId, Command("c-fail", "fail"));
        var pidFile = Path.Combine(state.Path, "..", $"handler-{Guid.NewGuid():N}.pid");

        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "enroll"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["HANDLER_PID_FILE"] = pidFile;
        foreach (var argument in new[] { "device", "run", "--broker", server.MqttEndpoint.ToString(), "--state", state.Path, "--command-handler", script })
        {
            start.ArgumentList.Add(argument);
        }

        using var child = Process.Start(start)!;
        child.ErrorDataReceived += (_, e) => { if (e.Data is not null) { output.WriteLine($"agent: {e.Data}"); } };
        child.OutputDataReceived += (_, e) => { if (e.Data is not null) { output.WriteLine($"agent: {e.Data}"); } };
        child.BeginErrorReadLine();
        child.BeginOutputReadLine();
        try
        {
            await Eventually.ReturnsAsync(
                () => Task.FromResult(desk.Results.Select(r => r.Result.CommandId).Distinct().Count()),
                count => count == 3,
                Patience,
                "the three queued commands' results");

            // Sent to the running agent, so its short life is spent in the handler, not in the agent's start-up (which
            // took more than 5 s on a loaded machine, and the command then expired before it ran).
            await desk.SendAsync(deviceId, Command("c-hang", "hang", ttl: TimeSpan.FromSeconds(5)));
            var results = await Eventually.ReturnsAsync(
                () => Task.FromResult(desk.Results.Select(r => r.Result).ToList()),
                r => r.Select(x => x.CommandId).Distinct().Count() == 4,
                Patience,
                "four results");
            var echo = results.First(r => r.CommandId == "c-echo");
            Assert.Equal(CommandStatuses.Succeeded, echo.Status);
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"got":{"n":7},"id":"c-echo"}"""), echo.Payload), echo.Payload?.ToJsonString());
            var words = results.First(r => r.CommandId == "c-words");
            Assert.Equal(CommandStatuses.Succeeded, words.Status);
            Assert.Equal("plain words", words.Payload!.GetValue<string>());
            var fail = results.First(r => r.CommandId == "c-fail");
            Assert.Equal(CommandStatuses.Failed, fail.Status);
            Assert.Equal("the disk is on fire", fail.Message);
            var hang = results.First(r => r.CommandId == "c-hang");
            Assert.Equal(CommandStatuses.Failed, hang.Status);
            Assert.Contains("did not finish before it expired", hang.Message, StringComparison.Ordinal);
            var pid = int.Parse((await File.ReadAllTextAsync(pidFile)).Trim(), System.Globalization.CultureInfo.InvariantCulture);
            await Eventually.ReturnsAsync(() => Task.FromResult(Directory.Exists($"/proc/{pid}")), alive => !alive, Patience, $"the hanging handler (pid {pid}) killed");
        }
        finally
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync();
            File.Delete(script);
            File.Delete(pidFile);
        }
    }

    [Fact]
    public async Task RunWithACommandHandlerThatDoesNotExist_IsAUsageError()
    {
        using var state = new TempDirectory();
        var missing = Path.Combine(state.Path, "no-such-handler.sh");
        var result = await CliRunner.RunAsync("device", "run", "--client-id", "cli-handler-2", "--state", state.Path, "--command-handler", missing);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("does not exist", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReportWithoutAnAgent_ConnectsOnce_TheServerHasTheReport_AndTwinShowsTheAppliedDesired()
    {
        await using var server = await TestServer.StartAsync(output);
        var twins = new TwinDesk(server);
        using var state = new TempDirectory();
        var deviceId = await RegisterAsync(server, "cli-report-1", state.Path);
        await twins.PatchDesiredAsync(deviceId, """{"interval":30}""", push: false);

        var report = await CliRunner.RunAsync("device", "report", "--broker", server.MqttEndpoint.ToString(), "--state", state.Path, "--data", """{"firmware":"1.2","temp":20}""");
        Assert.True(report.ExitCode == 0, report.Error);
        var onServer = await twins.GetAsync(deviceId);
        Assert.Equal(1, onServer.ReportedVersion);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"firmware":"1.2","temp":20}"""), onServer.Reported));

        var shown = await CliRunner.RunAsync("device", "twin", "--state", state.Path, "--json");
        Assert.Equal(0, shown.ExitCode);
        var twin = JsonNode.Parse(shown.Out)!;
        Assert.Equal(1, twin["desired_version"]!.GetValue<long>());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"interval":30}"""), twin["desired"]));
        Assert.True(JsonNode.DeepEquals(onServer.Reported, twin["reported"]));
        Assert.False(twin["report_pending"]!.GetValue<bool>());

        var refused = await CliRunner.RunAsync("device", "report", "--state", state.Path, "--data", """{"bad.key":1}""");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("bad.key", refused.Error, StringComparison.Ordinal);
        var notJson = await CliRunner.RunAsync("device", "report", "--state", state.Path, "--data", "[1,2]");
        Assert.Equal(2, notJson.ExitCode);
    }
}
