using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.EndToEnd;

/// <summary>
/// The device library against the server's own twin and command sides (HTTP API, push, commands/pending and
/// commands/result handlers): a command with wait answered by the handler, a command queued while the device was stopped
/// delivered and recorded once when it starts, a desired patch through the HTTP API applied by the device, a report that
/// the HTTP API then shows.
/// </summary>
public sealed class ServerEndToEndTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private async Task<(DeviceHarness Device, string DeviceId)> StartAsync(TestServer server, string statePath, string clientId, string? token, Action<DeviceCommands> handlers)
    {
        var device = DeviceHarness.Create(server.MqttEndpoint, clientId, statePath, token, output, o => o.MaxAttempts = 50);
        handlers(device.Commands);
        var identity = await device.Registration.StartAsync();
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Twin.IsSynchronized), s => s, Patience, "synchronized");
        return (device, identity.DeviceId);
    }

    [Fact]
    public async Task CommandWithWait_ReturnsTheHandlersResult_QueuedCommandRunsOnceWhenTheDeviceComesBack()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var runs = 0;
        void Handlers(DeviceCommands c) => c.OnCommand("ping", (request, _) =>
        {
            Interlocked.Increment(ref runs);
            return Task.FromResult(CommandResult.Succeeded(new JsonObject { ["pong"] = request.Payload?["n"]?.GetValue<int>() }));
        });
        var (device, deviceId) = await StartAsync(server, state.Path, "e2e-cmd-1", (await server.CreateTokenAsync()).Token, Handlers);
        await using (device)
        {
            using var sent = await server.Http.PostAsJsonAsync($"/api/devices/{deviceId}/commands?wait=10s", new JsonObject { ["name"] = "ping", ["payload"] = new JsonObject { ["n"] = 1 }, ["ttl"] = "1m" });
            var body = JsonNode.Parse(await sent.Content.ReadAsStringAsync())!;
            output.WriteLine(body.ToJsonString());
            Assert.Equal("succeeded", body["state"]!.GetValue<string>());
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"pong":1}"""), body["result"]));
        }

        using var queued = await server.Http.PostAsJsonAsync($"/api/devices/{deviceId}/commands", new JsonObject { ["name"] = "ping", ["payload"] = new JsonObject { ["n"] = 2 }, ["ttl"] = "1m" });
        var commandId = JsonNode.Parse(await queued.Content.ReadAsStringAsync())!["command_id"]!.GetValue<string>();
        var (second, _) = await StartAsync(server, state.Path, "e2e-cmd-1", null, Handlers);
        await using var _ = second;
        var done = await Eventually.ReturnsAsync(
            async () => JsonNode.Parse(await server.Http.GetStringAsync($"/api/commands/{commandId}"))!,
            c => c["state"]!.GetValue<string>() == "succeeded",
            Patience,
            "the queued command succeeded");
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"pong":2}"""), done["result"]));
        Assert.Equal(2, runs);
    }

    [Fact]
    public async Task DesiredPatchThroughTheHttpApi_IsAppliedByTheDevice_AndItsReportShowsInTheApi()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await StartAsync(server, state.Path, "e2e-twin-1", (await server.CreateTokenAsync()).Token, _ => { });
        await using var _ = device;
        using var patch = new HttpRequestMessage(HttpMethod.Patch, $"/api/devices/{deviceId}/twin/desired") { Content = JsonContent.Create(new JsonObject { ["interval"] = 5 }) };
        using var patched = await server.Http.SendAsync(patch);
        Assert.True(patched.IsSuccessStatusCode, await patched.Content.ReadAsStringAsync());
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Twin.DesiredVersion), v => v == 1, Patience, "version 1 applied");
        Assert.Equal(5, device.Twin.Desired["interval"]!.GetValue<int>());

        await device.Twin.ReportAsync(new JsonObject { ["interval"] = 5 });
        var twin = await Eventually.ReturnsAsync(
            async () => JsonNode.Parse(await server.Http.GetStringAsync($"/api/devices/{deviceId}/twin"))!,
            t => t.ToJsonString().Contains("\"reported_version\":1", StringComparison.Ordinal),
            Patience,
            "the report in the API");
        output.WriteLine(twin.ToJsonString());
    }
}
