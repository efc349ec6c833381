using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Messages;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Commands;

/// <summary>
/// The device's command runtime against a real broker, the test standing in for the server's command side
/// (<see cref="CommandDesk"/>): handlers by name, unknown names rejected, throwing handlers failed, expired commands not
/// run, queued commands fetched on connect, and a command delivered again (to the same or a restarted device) not run again
/// while its stored result is sent again.
/// </summary>
public sealed class DeviceCommandTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private async Task<(DeviceHarness Device, string DeviceId)> StartDeviceAsync(TestServer server, string statePath, string clientId, string? token, Action<DeviceCommands> handlers)
    {
        var device = DeviceHarness.Create(server.MqttEndpoint, clientId, statePath, token, output, o => o.MaxAttempts = 50);
        handlers(device.Commands);
        var identity = await device.Registration.StartAsync();
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Twin.IsSynchronized), s => s, Patience, "the device synchronized");
        return (device, identity.DeviceId);
    }

    private static Task<IReadOnlyList<(string DeviceId, CommandResultRequest Result)>> ResultsFor(CommandDesk desk, string commandId, int count = 1) =>
        Eventually.ReturnsAsync(
            () => Task.FromResult<IReadOnlyList<(string DeviceId, CommandResultRequest Result)>>([.. desk.Results.Where(r => r.Result.CommandId == commandId)]),
            r => r.Count >= count,
            Patience,
            $"{count} result(s) of {commandId}");

    private static DeviceCommand Command(string id, string name, JsonNode? payload = null, TimeSpan? ttl = null) =>
        new() { CommandId = id, Name = name, Payload = payload, ExpiresAt = DateTimeOffset.UtcNow + (ttl ?? TimeSpan.FromMinutes(5)) };

    [Fact]
    public async Task HandlerSucceeds_ResultSucceededWithItsPayload_UnknownNameRejected_ThrowingHandlerFailedWithItsMessage()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new CommandDesk(server);
        using var state = new TempDirectory();
        DeviceCommandRequest? seen = null;
        var (device, deviceId) = await StartDeviceAsync(server, state.Path, "cmd-basic-1", (await server.CreateTokenAsync()).Token, commands =>
        {
            commands.OnCommand("reboot", (request, _) =>
            {
                seen = request;
                return Task.FromResult(CommandResult.Succeeded(new JsonObject { ["rebooted"] = true, ["delay"] = request.Payload!["delay"]!.GetValue<int>() }));
            });
            commands.OnCommand("explode", (_, _) => throw new InvalidOperationException("the fuse is wet"));
        });
        await using var _ = device;

        await desk.SendAsync(deviceId, Command("c-1", "reboot", new JsonObject { ["delay"] = 5 }));
        await desk.SendAsync(deviceId, Command("c-2", "no-such-command"));
        await desk.SendAsync(deviceId, Command("c-3", "explode"));

        var ok = Assert.Single(await ResultsFor(desk, "c-1")).Result;
        Assert.Equal(CommandStatuses.Succeeded, ok.Status);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"rebooted":true,"delay":5}"""), ok.Payload));
        Assert.Equal("reboot", seen!.Name);
        Assert.Equal("c-1", seen.CommandId);

        var rejected = Assert.Single(await ResultsFor(desk, "c-2")).Result;
        Assert.Equal(CommandStatuses.Rejected, rejected.Status);
        Assert.Contains("no-such-command", rejected.Message, StringComparison.Ordinal);

        var failed = Assert.Single(await ResultsFor(desk, "c-3")).Result;
        Assert.Equal(CommandStatuses.Failed, failed.Status);
        Assert.Equal("the fuse is wet", failed.Message);
        Assert.All(desk.Results, r => Assert.Equal(deviceId, r.DeviceId));
    }

    [Fact]
    public async Task CommandDeliveredTwice_RunsOnce_AndItsStoredResultIsSentAgain()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new CommandDesk(server);
        using var state = new TempDirectory();
        var runs = 0;
        var (device, deviceId) = await StartDeviceAsync(server, state.Path, "cmd-twice-1", (await server.CreateTokenAsync()).Token, commands =>
            commands.OnCommand("count", (_, _) => Task.FromResult(CommandResult.Succeeded(Interlocked.Increment(ref runs)))));
        await using var _ = device;

        var command = Command("c-twice", "count");
        await desk.SendAsync(deviceId, command);
        await ResultsFor(desk, "c-twice");
        await desk.SendAsync(deviceId, command);
        var results = await ResultsFor(desk, "c-twice", 2);

        Assert.Equal(1, runs);
        Assert.All(results, r => Assert.Equal(CommandStatuses.Succeeded, r.Result.Status));
        Assert.All(results, r => Assert.Equal(1, r.Result.Payload!.GetValue<int>()));
    }

    [Fact]
    public async Task ResultNotAcknowledgedBeforeTheDeviceStopped_IsSentByTheNextInstance_AndTheServersRedeliveryDoesNotRunItAgain()
    {
        // The server's own command side: the command is sent over HTTP, the device loses its connection while the
        // handler runs, so the result cannot be sent; the device stops. The next instance on the same state is offered
        // the command again by the server (it is "sent" without a result) and must answer with the stored result.
        await using var server = await TestServer.StartAsync(output);
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        using var state = new TempDirectory();
        var runs = 0;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void Handlers(DeviceCommands commands) =>
            commands.OnCommand("count", async (_, _) =>
            {
                var run = Interlocked.Increment(ref runs);
                started.TrySetResult();
                await release.Task;
                return CommandResult.Succeeded(run);
            });
        var first = DeviceHarness.Create(proxy.Endpoint, "cmd-restart-1", state.Path, (await server.CreateTokenAsync()).Token, output, o => o.MaxAttempts = 50);
        Handlers(first.Commands);
        var deviceId = (await first.Registration.StartAsync()).DeviceId;
        await first.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => Task.FromResult(first.Twin.IsSynchronized), s => s, Patience, "the device synchronized");

        using var sent = await server.Http.PostAsJsonAsync($"/api/devices/{deviceId}/commands", new JsonObject { ["name"] = "count", ["ttl"] = "5m" });
        var commandId = JsonNode.Parse(await sent.Content.ReadAsStringAsync())!["command_id"]!.GetValue<string>();
        await started.Task.WaitAsync(Patience);
        proxy.Refuse();
        await Eventually.ReturnsAsync(() => Task.FromResult(first.Twin.IsSynchronized), s => !s, Patience, "the device noticed it is offline");
        release.SetResult();

        // The device stops only once it has stored the result it could not send (a command still running when the
        // device stops is answered failed by the next instance, never run again: at most once).
        await using (var store = new State.ManagementStoreHandle(() => new State.ManagementStore(state.Path, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance)))
        {
            await Eventually.ReturnsAsync(() => Task.FromResult(store.Store.FindResult(commandId)), r => r is { Status: "succeeded", Acknowledged: false }, Patience, "the result stored, not yet acknowledged");
        }

        await first.DisposeAsync();
        Assert.Equal("sent", (await CommandAsync(server, commandId))["state"]!.GetValue<string>());

        proxy.ForwardTo(server.MqttEndpoint);
        var second = DeviceHarness.Create(proxy.Endpoint, "cmd-restart-1", state.Path, null, output, o => o.MaxAttempts = 50);
        await using var _ = second;
        Handlers(second.Commands);
        await second.Registration.StartAsync();
        await second.StartAgentsAsync();
        var done = await Eventually.ReturnsAsync(() => CommandAsync(server, commandId), c => c["state"]!.GetValue<string>() != "sent", Patience, "the stored result reached the server");

        Assert.Equal("succeeded", done["state"]!.GetValue<string>());
        Assert.Equal(1, done["result"]!.GetValue<int>());
        Assert.Equal(1, runs);
    }

    private static async Task<JsonNode> CommandAsync(TestServer server, string commandId) =>
        JsonNode.Parse(await server.Http.GetStringAsync(new Uri($"/api/commands/{commandId}", UriKind.Relative)))!;

    [Fact]
    public async Task CommandPastItsExpiry_IsNotRun_AndAnsweredFailed_ASlowHandlerIsCancelledAtTheExpiry()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new CommandDesk(server);
        using var state = new TempDirectory();
        var ran = 0;
        var (device, deviceId) = await StartDeviceAsync(server, state.Path, "cmd-expiry-1", (await server.CreateTokenAsync()).Token, commands =>
        {
            commands.OnCommand("late", (_, _) =>
            {
                Interlocked.Increment(ref ran);
                return Task.FromResult(CommandResult.Succeeded());
            });
            commands.OnCommand("slow", async (_, cancellationToken) =>
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
                return CommandResult.Succeeded();
            });
        });
        await using var _ = device;

        await desk.SendAsync(deviceId, Command("c-late", "late", ttl: TimeSpan.FromMinutes(-1)));
        await desk.SendAsync(deviceId, Command("c-slow", "slow", ttl: TimeSpan.FromSeconds(1)));

        var late = Assert.Single(await ResultsFor(desk, "c-late")).Result;
        Assert.Equal(CommandStatuses.Failed, late.Status);
        Assert.Contains("expired before it ran", late.Message, StringComparison.Ordinal);
        Assert.Equal(0, ran);
        var slow = Assert.Single(await ResultsFor(desk, "c-slow")).Result;
        Assert.Equal(CommandStatuses.Failed, slow.Status);
        Assert.Contains("did not finish before it expired", slow.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CommandQueuedWhileTheDeviceWasAway_IsFetchedWithCommandsPendingWhenItConnects()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new CommandDesk(server);
        using var state = new TempDirectory();
        var token = (await server.CreateTokenAsync()).Token;
        string deviceId;
        var (first, id) = await StartDeviceAsync(server, state.Path, "cmd-pending-1", token, _ => { });
        await using (first)
        {
            deviceId = id;
        }

        desk.Queue(deviceId, Command("c-queued", "ping", new JsonObject { ["n"] = 1 }));
        var (second, _) = await StartDeviceAsync(server, state.Path, "cmd-pending-1", null, commands =>
            commands.OnCommand("ping", (request, _) => Task.FromResult(CommandResult.Succeeded(request.Payload))));
        await using var _ = second;

        var result = Assert.Single(await ResultsFor(desk, "c-queued")).Result;
        Assert.Equal(CommandStatuses.Succeeded, result.Status);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"n":1}"""), result.Payload));
    }
}
