using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Enroll.Protocol.Messages;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Twins;

/// <summary>
/// The device twin against a real server (embedded broker, SQLite registry): the operator's desired patches, made while
/// the device is online, offline behind a refusing proxy, or not running at all, are applied in version order, each once;
/// a device offline past the kept history gets the whole document; reports made offline are coalesced into one patch.
/// </summary>
public sealed class DeviceTwinTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private sealed class Running : IAsyncDisposable
    {
        public required DeviceHarness Device { get; init; }

        public required string DeviceId { get; init; }

        public ConcurrentQueue<DesiredTwinChange> Changes { get; } = new();

        public async ValueTask DisposeAsync() => await Device.DisposeAsync();
    }

    /// <summary>A registered device with its agents running, pointed at <paramref name="broker"/>, recording every desired change.</summary>
    private async Task<Running> StartDeviceAsync(Uri broker, string statePath, string clientId, string? token)
    {
        var device = DeviceHarness.Create(broker, clientId, statePath, token, output, o => o.MaxAttempts = 50);
        var identity = await device.Registration.StartAsync();
        var running = new Running { Device = device, DeviceId = identity.DeviceId };
        device.Twin.OnDesiredChanged((change, _) =>
        {
            running.Changes.Enqueue(change);
            return Task.CompletedTask;
        });
        await device.StartAgentsAsync();
        await WaitSynchronizedAsync(device.Twin);
        return running;
    }

    private static Task WaitSynchronizedAsync(DeviceTwin twin) =>
        Eventually.ReturnsAsync(() => Task.FromResult(twin.IsSynchronized), s => s, Patience, "the twin synchronized");

    private static Task WaitVersionAsync(DeviceTwin twin, long version) =>
        Eventually.ReturnsAsync(() => Task.FromResult(twin.DesiredVersion), v => v == version, Patience, $"desired version {version} applied");

    private static void AssertSameJson(string expected, JsonNode actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), actual), $"expected {expected}, got {actual.ToJsonString()}");

    [Fact]
    public async Task DesiredPatchesMadeWhileDisconnected_AreAppliedInVersionOrder_EachOnce_AfterReconnect()
    {
        await using var server = await TestServer.StartAsync(output);
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        var desk = new TwinDesk(server);
        using var state = new TempDirectory();
        await using var device = await StartDeviceAsync(proxy.Endpoint, state.Path, "twin-offline-1", (await server.CreateTokenAsync()).Token);

        Assert.Equal(1, await desk.PatchDesiredAsync(device.DeviceId, """{"a":1}"""));
        await WaitVersionAsync(device.Device.Twin, 1);

        proxy.Refuse();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Device.Twin.IsSynchronized), s => !s, Patience, "the device noticed it is offline");
        await desk.PatchDesiredAsync(device.DeviceId, """{"b":2}""");
        await desk.PatchDesiredAsync(device.DeviceId, """{"a":null,"c":{"x":3}}""");
        Assert.Equal(4, await desk.PatchDesiredAsync(device.DeviceId, """{"c":{"y":4}}"""));

        proxy.ForwardTo(server.MqttEndpoint);
        await WaitVersionAsync(device.Device.Twin, 4);
        await WaitSynchronizedAsync(device.Device.Twin);

        Assert.Equal([1, 2, 3, 4], device.Changes.Select(c => c.Version));
        Assert.All(device.Changes, c => Assert.False(c.IsWholeDocument));
        var twin = await desk.GetAsync(device.DeviceId);
        AssertSameJson("""{"b":2,"c":{"x":3,"y":4}}""", device.Device.Twin.Desired);
        Assert.True(JsonNode.DeepEquals(twin.Desired, device.Device.Twin.Desired));
        Assert.Equal(4, (await DeviceTwin.ReadAsync(state.Path)).DesiredVersion);
    }

    [Fact]
    public async Task DesiredPatchesMadeWhileTheDeviceWasStopped_AreAppliedByTheNextInstance_WithoutReplayingTheOldOnes()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new TwinDesk(server);
        using var state = new TempDirectory();
        string deviceId;
        await using (var first = await StartDeviceAsync(server.MqttEndpoint, state.Path, "twin-restart-1", (await server.CreateTokenAsync()).Token))
        {
            deviceId = first.DeviceId;
            await desk.PatchDesiredAsync(deviceId, """{"interval":10}""");
            await WaitVersionAsync(first.Device.Twin, 1);
            Assert.Equal([1L], first.Changes.Select(c => c.Version));
        }

        await desk.PatchDesiredAsync(deviceId, """{"interval":20}""");
        await desk.PatchDesiredAsync(deviceId, """{"mode":"eco"}""");

        await using var second = await StartDeviceAsync(server.MqttEndpoint, state.Path, "twin-restart-1", null);
        await WaitVersionAsync(second.Device.Twin, 3);
        Assert.Equal([2L, 3L], second.Changes.Select(c => c.Version));
        AssertSameJson("""{"interval":20,"mode":"eco"}""", second.Device.Twin.Desired);
    }

    [Fact]
    public async Task DeviceOfflinePastTheKeptHistory_GetsTheWholeDocumentOnce_AndEndsInTheServersState()
    {
        await using var server = await TestServer.StartAsync(output);
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        var desk = new TwinDesk(server);
        using var state = new TempDirectory();
        await using var device = await StartDeviceAsync(proxy.Endpoint, state.Path, "twin-pruned-1", (await server.CreateTokenAsync()).Token);
        await desk.PatchDesiredAsync(device.DeviceId, """{"a":1,"b":1}""");
        await WaitVersionAsync(device.Device.Twin, 1);

        proxy.Refuse();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Device.Twin.IsSynchronized), s => !s, Patience, "the device noticed it is offline");
        await desk.PatchDesiredAsync(device.DeviceId, """{"a":2}""");
        await desk.PatchDesiredAsync(device.DeviceId, """{"b":null}""");
        await desk.PatchDesiredAsync(device.DeviceId, """{"c":3}""");
        Assert.True(await desk.PruneHistoryAsync(keepPerDevice: 1) >= 2);

        proxy.ForwardTo(server.MqttEndpoint);
        await WaitVersionAsync(device.Device.Twin, 4);

        Assert.Equal([1L, 4L], device.Changes.Select(c => c.Version));
        var whole = device.Changes.Last();
        Assert.True(whole.IsWholeDocument);
        AssertSameJson("""{"a":2,"c":3}""", whole.Desired);
        Assert.True(JsonNode.DeepEquals((await desk.GetAsync(device.DeviceId)).Desired, device.Device.Twin.Desired));
    }

    [Fact]
    public async Task PushedPatchThatSkipsAVersion_MakesTheDeviceAskForWhatItMissed_AndApplyBothInOrder()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new TwinDesk(server);
        using var state = new TempDirectory();
        await using var device = await StartDeviceAsync(server.MqttEndpoint, state.Path, "twin-gap-1", (await server.CreateTokenAsync()).Token);

        // Version 1's push is lost; version 2's arrives first.
        await desk.PatchDesiredAsync(device.DeviceId, """{"a":1}""", push: false);
        await desk.PatchDesiredAsync(device.DeviceId, """{"b":2}""");
        await WaitVersionAsync(device.Device.Twin, 2);

        // A stale push (a redelivery of version 1) changes nothing.
        await desk.PushAsync(device.DeviceId, new TwinDesiredPatch { Version = 1, Patch = new JsonObject { ["a"] = 99 } });
        await desk.PatchDesiredAsync(device.DeviceId, """{"c":3}""");
        await WaitVersionAsync(device.Device.Twin, 3);

        Assert.Equal([1L, 2L, 3L], device.Changes.Select(c => c.Version));
        AssertSameJson("""{"a":1,"b":2,"c":3}""", device.Device.Twin.Desired);
    }

    [Fact]
    public async Task ReportsMadeWhileOffline_AreCoalescedIntoOnePatch_AndReachTheServerAfterReconnect()
    {
        await using var server = await TestServer.StartAsync(output);
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        var desk = new TwinDesk(server);
        using var state = new TempDirectory();
        await using var device = await StartDeviceAsync(proxy.Endpoint, state.Path, "twin-report-1", (await server.CreateTokenAsync()).Token);
        var published = server.CountRequests();
        var topic = $"enroll/v1/devices/{device.DeviceId}/twin/report";

        proxy.Refuse();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Device.Twin.IsSynchronized), s => !s, Patience, "the device noticed it is offline");
        var twin = device.Device.Twin;
        await twin.ReportAsync(new JsonObject { ["firmware"] = "1.0", ["temp"] = 20 });
        await twin.ReportAsync(new JsonObject { ["temp"] = 21, ["fan"] = new JsonObject { ["rpm"] = 900 } });
        await twin.ReportAsync(new JsonObject { ["firmware"] = null, ["fan"] = new JsonObject { ["on"] = true } });
        AssertSameJson("""{"temp":21,"fan":{"rpm":900,"on":true}}""", twin.Reported);
        Assert.True((await DeviceTwin.ReadAsync(state.Path)).ReportPending);

        proxy.ForwardTo(server.MqttEndpoint);
        var onServer = await Eventually.ReturnsAsync(() => desk.GetAsync(device.DeviceId), t => t.ReportedVersion > 0, Patience, "the report reached the server");
        await Eventually.ReturnsAsync(() => DeviceTwin.ReadAsync(state.Path), s => !s.ReportPending, Patience, "the report was acknowledged");

        Assert.Equal(1, onServer.ReportedVersion);
        Assert.Equal(1, published[topic]);
        AssertSameJson("""{"temp":21,"fan":{"rpm":900,"on":true}}""", onServer.Reported);
    }

    [Fact]
    public async Task ReportQueuedInTheStateFolderWhileNoAgentRuns_IsDeliveredWhenTheAgentStarts()
    {
        await using var server = await TestServer.StartAsync(output);
        var desk = new TwinDesk(server);
        using var state = new TempDirectory();
        string deviceId;
        await using (var first = await StartDeviceAsync(server.MqttEndpoint, state.Path, "twin-queued-1", (await server.CreateTokenAsync()).Token))
        {
            deviceId = first.DeviceId;
            await first.Device.Twin.ReportAsync(new JsonObject { ["a"] = 1 });
            await Eventually.ReturnsAsync(() => desk.GetAsync(deviceId), t => t.ReportedVersion == 1, Patience, "the first report reached the server");
        }

        await DeviceTwin.QueueReportAsync(state.Path, new JsonObject { ["b"] = 2 });
        Assert.True((await DeviceTwin.ReadAsync(state.Path)).ReportPending);

        await using var second = await StartDeviceAsync(server.MqttEndpoint, state.Path, "twin-queued-1", null);
        var onServer = await Eventually.ReturnsAsync(() => desk.GetAsync(deviceId), t => t.ReportedVersion == 2, Patience, "the queued report reached the server");
        AssertSameJson("""{"a":1,"b":2}""", onServer.Reported);
    }

    [Fact]
    public async Task ReportOverTheLimits_IsRefusedWithTheReason_AndStoresNothing()
    {
        using var state = new TempDirectory();
        await using var store = new State.ManagementStoreHandle(() => new State.ManagementStore(state.Path, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance));
        var twin = new DeviceTwin(store);
        var error = await Assert.ThrowsAsync<ArgumentException>(() => twin.ReportAsync(new JsonObject { ["bad.key"] = 1 }));
        Assert.Contains("bad.key", error.Message, StringComparison.Ordinal);
        var big = await Assert.ThrowsAsync<ArgumentException>(() => twin.ReportAsync(new JsonObject { ["blob"] = new string('x', 40 * 1024) }));
        Assert.Contains("refused", big.Message, StringComparison.Ordinal);
        Assert.Empty(twin.Reported);
        Assert.False(twin.Snapshot().ReportPending);
    }
}
