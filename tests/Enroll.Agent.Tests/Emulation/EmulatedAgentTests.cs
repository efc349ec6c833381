using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Agent.Tests.Infrastructure;
using Enroll.Device;
using Enroll.Protocol.Admin;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Emulation;

/// <summary>
/// The ARM agent, published by scripts/publish-agent.sh, run under qemu against a real x64 server: it registers,
/// delivers, is killed with SIGKILL in the middle of a burst and restarted as the service (losing nothing and storing
/// nothing twice), takes a desired twin value and runs a command through its handler, and stops cleanly on SIGTERM.
/// Every step has its own time limit; the test prints how long each took. The suite runs linux-arm64; linux-arm (32-bit,
/// a JIT-compiled single file, much slower under qemu) runs when scripts/test-arm-emulated.sh asks for it.
/// </summary>
[Collection(SerialBuilds.Name)]
public sealed class EmulatedAgentTests(ITestOutputHelper output)
{
    /// <summary>Sends in the burst that is killed: far more than it sends before the kill, so the kill lands mid-burst.</summary>
    private const int Burst = 2000;

    /// <summary>Sends returned (durable) when the burst is killed.</summary>
    private const int KillAfter = 150;

    private static readonly TimeSpan Step = TimeSpan.FromMinutes(3);

    private const string Handler = """
        #!/bin/sh
        payload=$(cat)
        case "$1" in
          echo) printf '{"got":%s,"id":"%s"}' "$payload" "$ENROLL_COMMAND_ID" ;;
          *) echo "unknown command $1" >&2; exit 64 ;;
        esac
        """;

    [EmulatedFact(EmulatedTarget.Arm64)]
    public Task Arm64AgentUnderQemu_RegistersDeliversSurvivesKill9_TakesTwinAndCommand() => RunScenarioAsync(Emulator.Arm64);

    [EmulatedFact(EmulatedTarget.Arm32)]
    public Task Arm32AgentUnderQemu_RegistersDeliversSurvivesKill9_TakesTwinAndCommand() => RunScenarioAsync(Emulator.Arm32);

    private async Task RunScenarioAsync(Emulator emulator)
    {
        var qemu = emulator.Require();
        var total = Stopwatch.StartNew();
        var published = await Timed($"publish {emulator.RuntimeIdentifier}", () => AgentBuilds.PublishAsync(emulator.RuntimeIdentifier, output));
        Assert.Equal(emulator.ElfMachine, ElfMachine(Path.Combine(published, "enroll-agent"))); // the emulator really runs ARM code

        await using var server = await TestServer.StartAsync(output);
        using var folder = new TempDirectory("enroll-arm64");
        var handler = folder.Combine("handler.sh");
        await File.WriteAllTextAsync(handler, Handler.Replace("\r\n", "\n", StringComparison.Ordinal) + "\n");
        File.SetUnixFileMode(handler, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var token = await server.CreateTokenAsync();
        var state = folder.Combine("state");
        var config = await AgentExecutable.WriteConfigAsync(folder.Combine("agent.json"), new JsonObject
        {
            ["broker"] = server.MqttEndpoint.ToString(),
            ["clientId"] = $"{emulator.Architecture}-under-qemu",
            ["token"] = token.Token,
            ["state"] = state,
            ["commandHandler"] = handler,
        });
        var agent = new AgentExecutable(Path.Combine(published, "enroll-agent"), config, qemu);

        // Register, then one message delivered.
        var registered = await Timed("register", () => agent.RunAsync(Step, "register", "--json"));
        Assert.True(registered.ExitCode == 0, $"register under qemu: {registered}");
        var deviceId = JsonDocument.Parse(registered.StandardOutput).RootElement.GetProperty("device_id").GetString()!;
        var sent = await Timed("send --deliver", () => agent.RunAsync(Step, "send", "--stream", "hello", "--data", $$"""{"arch":"{{emulator.Architecture}}"}""", "--deliver"));
        Assert.True(sent.ExitCode == 0, $"send --deliver under qemu: {sent}");
        Assert.Equal(emulator.Architecture, JsonDocument.Parse(Assert.Single(await server.MessagesAsync(deviceId)).Payload).RootElement.GetProperty("arch").GetString());

        // A burst, each send printed the moment it is durable, killed with SIGKILL once enough have returned.
        var returned = await Timed("burst until kill -9", () => BurstThenKillAsync(agent));
        output.WriteLine($"{returned.Count} sends returned before the kill; {await server.CountMessagesAsync(deviceId) - 1} of the burst stored by then");
        Assert.InRange(returned.Count, KillAfter, Burst - 1);

        // Restarted as the unit starts it (`run`, configuration only, systemd's notification socket): it delivers what
        // the outbox kept.
        using var notify = new NotifySocket(folder.Combine("notify"));
        await using (var run = AgentProcess.Start(agent, output, "run", new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Path }, "run"))
        {
            Assert.Contains("READY=1", await Timed("run: READY=1", () => notify.ReceiveAsync(Step)), StringComparison.Ordinal);
            await Timed("run: outbox delivered", () => Eventually.ReturnsAsync(
                async () => (await BurstStoredAsync(server, deviceId)).ToHashSet(),
                stored => returned.IsSubsetOf(stored),
                Step,
                "every send that returned before the kill stored"));

            // A desired twin value reaches the device's state folder.
            using (var patch = new StringContent("""{"led":"green","interval":15}""", Encoding.UTF8, "application/merge-patch+json"))
            {
                using var patched = await server.Http.PatchAsync($"/api/devices/{deviceId}/twin/desired", patch);
                Assert.True(patched.IsSuccessStatusCode, $"PATCH desired: {(int)patched.StatusCode} {await patched.Content.ReadAsStringAsync()}");
            }

            var twin = await Timed("twin: desired applied", () => Eventually.ReturnsAsync(
                () => DeviceTwin.ReadAsync(state),
                t => t.Desired["led"]?.GetValue<string>() == "green",
                Step,
                "the desired value in the device's twin"));
            Assert.Equal(15, twin.Desired["interval"]!.GetValue<int>());
            Assert.True(twin.DesiredVersion >= 1);

            // A command runs through the handler; the server waits for its result.
            var command = await Timed("command: result", async () =>
            {
                using var body = new StringContent("""{"name":"echo","payload":{"n":7},"ttl":"10m"}""", Encoding.UTF8, "application/json");
                using var sentCommand = await server.Http.PostAsync($"/api/devices/{deviceId}/commands?wait=90s", body);
                Assert.True(sentCommand.IsSuccessStatusCode, $"POST command: {(int)sentCommand.StatusCode} {await sentCommand.Content.ReadAsStringAsync()}");
                return (await sentCommand.Content.ReadFromJsonAsync(CommandJsonContext.Default.CommandInfo))!;
            });
            Assert.Equal("succeeded", command.State);
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse($$"""{"got":{"n":7},"id":"{{command.CommandId}}"}"""), command.Result), command.Result?.ToJsonString());

            Assert.Equal(0, await Timed("run: SIGTERM", () => run.TerminateAsync(TimeSpan.FromMinutes(1))));
        }

        // Whatever else the killed burst had stored goes out now; then every burst message is stored exactly once.
        var drained = await Timed("send --deliver (drain)", () => agent.RunAsync(Step, "send", "--stream", "hello", "--data", $$"""{"arch":"{{emulator.Architecture}}","last":true}""", "--deliver"));
        Assert.True(drained.ExitCode == 0, $"send --deliver under qemu: {drained}");
        var burst = await BurstStoredAsync(server, deviceId);
        Assert.Equal(burst.Count, burst.Distinct().Count());
        Assert.Empty(returned.Except(burst));
        Assert.All(burst, n => Assert.InRange(n, 0, Burst - 1));
        output.WriteLine($"stored {burst.Count} distinct burst messages, all {returned.Count} returned sends among them; the emulated run took {total.Elapsed.TotalSeconds:0} s");
    }

    private async Task<HashSet<int>> BurstThenKillAsync(AgentExecutable agent)
    {
        var returned = new HashSet<int>();
        await using var burst = AgentProcess.Start(
            agent, output, "burst", null,
            "send", "--stream", "burst", "--data", "{\"n\":{n}}", "--repeat", Burst.ToString(CultureInfo.InvariantCulture), "--concurrency", "4", "--print-ids", "--deliver");
        string? line;
        while ((line = await burst.ReadLineAsync(Step)) is not null)
        {
            returned.Add(int.Parse(line.Split(' ')[0], CultureInfo.InvariantCulture));
            if (returned.Count == KillAfter)
            {
                burst.Kill(); // SIGKILL to qemu, and so to the agent it runs: no cleanup, no flush.
                break;
            }
        }

        // Lines already in the pipe were durable too.
        while ((line = await burst.ReadLineAsync(TimeSpan.FromSeconds(30))) is not null)
        {
            returned.Add(int.Parse(line.Split(' ')[0], CultureInfo.InvariantCulture));
        }

        await burst.WaitForExitAsync(TimeSpan.FromSeconds(30));
        return returned;
    }

    private static async Task<List<int>> BurstStoredAsync(TestServer server, string deviceId) =>
        [.. (await server.MessagesAsync(deviceId)).Where(m => m.Stream == "burst").Select(m => JsonDocument.Parse(m.Payload).RootElement.GetProperty("n").GetInt32())];

    private async Task<T> Timed<T>(string step, Func<Task<T>> action)
    {
        var clock = Stopwatch.StartNew();
        var result = await action();
        output.WriteLine($"[{step}] {clock.Elapsed.TotalSeconds:0.0} s");
        return result;
    }

    private static int ElfMachine(string path)
    {
        using var file = File.OpenRead(path);
        var header = new byte[20];
        file.ReadExactly(header);
        return BitConverter.ToUInt16(header, 18);
    }
}
