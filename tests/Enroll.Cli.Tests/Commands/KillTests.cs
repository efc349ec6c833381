using System.Diagnostics;
using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// SPEC §8: the device process is killed with SIGKILL in the middle of a burst of sends while it delivers, then
/// restarted. Every send that returned must be stored on the server exactly once.
/// </summary>
public sealed class KillTests(ITestOutputHelper output)
{
    private const int Burst = 10_000;

    [Fact]
    public async Task DeviceKilledMidBurst_ThenRestarted_EverySendThatReturnedIsStoredExactlyOnce()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var token = await server.CreateTokenAsync();
        var registered = await CliRunner.RunAsync("device", "register", "--broker", server.MqttEndpoint.ToString(), "--client-id", "kill-1", "--token", token.Token!, "--state", state.Path, "--json");
        Assert.Equal(0, registered.ExitCode);
        using var identity = JsonDocument.Parse(registered.Out);
        var deviceId = identity.RootElement.GetProperty("device_id").GetString()!;

        // The child sends 10,000 messages with 8 concurrent senders while delivering them, printing each send the moment
        // it is durable. We kill it once a few thousand have returned.
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "enroll"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "device", "send", "--broker", server.MqttEndpoint.ToString(), "--state", state.Path, "--stream", "burst", "--data", "{\"n\":{n}}", "--repeat", $"{Burst}", "--concurrency", "8", "--print-ids", "--deliver" })
        {
            start.ArgumentList.Add(argument);
        }

        var returned = new HashSet<int>();
        using (var child = Process.Start(start)!)
        {
            child.ErrorDataReceived += (_, e) => { if (e.Data is not null) { output.WriteLine($"child: {e.Data}"); } };
            child.BeginErrorReadLine();
            var killAt = 3000;
            string? line;
            while ((line = await child.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60))) is not null)
            {
                returned.Add(int.Parse(line.Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture));
                if (returned.Count == killAt)
                {
                    child.Kill(); // SIGKILL on Linux: no cleanup, no flush.
                    break;
                }
            }

            // Lines already in the pipe were durable too.
            while ((line = await child.StandardOutput.ReadLineAsync()) is not null)
            {
                returned.Add(int.Parse(line.Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture));
            }

            await child.WaitForExitAsync();
        }

        var storedBeforeRestart = await server.CountMessagesAsync(deviceId);
        output.WriteLine($"{returned.Count} sends returned before the kill; {storedBeforeRestart} stored by then");
        Assert.InRange(returned.Count, 3000, Burst - 1);

        // Restart the device: its agent and publisher deliver whatever the outbox kept.
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "kill-1", state.Path, provisioningToken: null, output))
        {
            await device.StartAgentsAsync();
            await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, TimeSpan.FromSeconds(90), "the outbox drained after the restart");
        }

        var stored = (await server.MessagesAsync(deviceId)).Select(m =>
        {
            using var json = JsonDocument.Parse(m.Payload);
            return json.RootElement.GetProperty("n").GetInt32();
        }).ToList();

        Assert.Equal(stored.Count, stored.Distinct().Count());
        Assert.Empty(returned.Except(stored));
        Assert.All(stored, n => Assert.InRange(n, 0, Burst - 1));
        output.WriteLine($"stored {stored.Count} distinct messages; all {returned.Count} returned sends among them");
    }
}
