using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Enroll.Protocol.Twins;
using Enroll.Testing;
using FsCheck.Fluent;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Twins;

/// <summary>
/// The twin's promise (SPEC §2.5) under faults, end to end through the operator's HTTP API, the server's push, the real
/// embedded broker and SQLite: whatever the operator patches while the device is connected, disconnected, or talking to a
/// restarted server, the device ends with the server's latest desired document, having applied versions strictly in
/// increasing order, each once; and its reports all reach the server.
/// </summary>
public sealed class TwinConvergenceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(45);

    /// <summary>One step of an interleaving.</summary>
    public abstract record Step
    {
        public sealed record Patch(string Key, int? Value) : Step;

        public sealed record Report(string Key, int Value) : Step;

        public sealed record Disconnect : Step;

        public sealed record Reconnect : Step;
    }

    private static FsCheck.Gen<Step> Steps() =>
        Gen.Frequency(
            (5, from key in Gen.Elements("a", "b", "c", "d") from value in Gen.Choose(0, 9) from delete in Gen.Choose(0, 4) select (Step)new Step.Patch(key, delete == 0 ? null : value)),
            (3, from key in Gen.Elements("x", "y", "z") from value in Gen.Choose(0, 9) select (Step)new Step.Report(key, value)),
            (1, Gen.Constant<Step>(new Step.Disconnect())),
            (1, Gen.Constant<Step>(new Step.Reconnect())));

    /// <summary>
    /// A property over interleavings: FsCheck generates the step lists (a fixed seed per run is printed, so a failing
    /// interleaving is replayed by its steps in the output); each runs against one real server with its own device.
    /// </summary>
    [Fact]
    public async Task AnyInterleavingOfPatchesReportsDisconnectsAndReconnects_EndsConverged_WithVersionsAppliedInOrderOnce()
    {
        var cases = FsCheck.Fluent.Gen.Sample(Gen.ListOf(Steps()).Select(steps => steps.Take(14).ToArray()), 14, 12);
        var totals = new Totals();
        await using var server = await TestServer.StartAsync();
        var failed = new List<int>();
        try
        {
            for (var number = 1; number <= cases.Length; number++)
            {
                if (!await RunCaseAsync(server, number, cases[number - 1], totals))
                {
                    failed.Add(number);
                }
            }
        }
        finally
        {
            output.WriteLine($"{cases.Length} interleavings, {totals.Steps} steps ({totals.Patches} desired patches, {totals.Reports} reports, {totals.Disconnects} disconnects); {totals.Applied} desired versions applied; failed cases: [{string.Join(",", failed)}]");
        }

        Assert.Empty(failed);
    }

    private sealed class Totals
    {
        public int Steps;
        public int Patches;
        public int Reports;
        public int Disconnects;
        public int Applied;
    }

    private async Task<bool> RunCaseAsync(TestServer server, int number, Step[] steps, Totals totals)
    {
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(proxy.Endpoint, $"twin-prop-{number}", state.Path, (await server.CreateTokenAsync()).Token, output, o => o.MaxAttempts = 50);
        var deviceId = (await device.Registration.StartAsync()).DeviceId;
        var applied = new ConcurrentQueue<long>();
        device.Twin.OnDesiredChanged((change, _) =>
        {
            applied.Enqueue(change.Version);
            return Task.CompletedTask;
        });
        await device.StartAgentsAsync();
        var reported = new JsonObject();
        foreach (var step in steps)
        {
            Interlocked.Increment(ref totals.Steps);
            switch (step)
            {
                case Step.Patch patch:
                    Interlocked.Increment(ref totals.Patches);
                    await PatchDesiredAsync(server, deviceId, new JsonObject { [patch.Key] = patch.Value });
                    break;
                case Step.Report report:
                    Interlocked.Increment(ref totals.Reports);
                    var change = new JsonObject { [report.Key] = report.Value };
                    reported = (JsonObject)JsonMergePatch.Apply(reported, change.DeepClone())!;
                    await device.Twin.ReportAsync(change);
                    break;
                case Step.Disconnect:
                    Interlocked.Increment(ref totals.Disconnects);
                    proxy.Refuse();
                    break;
                case Step.Reconnect:
                    proxy.ForwardTo(server.MqttEndpoint);
                    break;
            }
        }

        proxy.ForwardTo(server.MqttEndpoint);
        var latest = await TwinAsync(server, deviceId);
        var desiredVersion = (long)latest["desired_version"]!;
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Twin.DesiredVersion), v => v == desiredVersion, Patience, $"case {number}: desired version {desiredVersion} applied");
        JsonObject onServer;
        try
        {
            onServer = await Eventually.ReturnsAsync(() => TwinAsync(server, deviceId), t => JsonNode.DeepEquals(t["reported"], reported), Patience, $"case {number}: every report reached the server");
        }
        catch (TimeoutException)
        {
            output.WriteLine($"case {number}: steps {string.Join(", ", steps.Select(s => s.ToString()))}; expected reported {reported.ToJsonString()}, device's {device.Twin.Reported.ToJsonString()}, pending {device.Twin.Snapshot().ReportPending}");
            throw;
        }


        var versions = applied.ToArray();
        Interlocked.Add(ref totals.Applied, versions.Length);
        var inOrderOnce = versions.Zip(versions.Skip(1)).All(pair => pair.First < pair.Second);
        var converged = JsonNode.DeepEquals(onServer["desired"], device.Twin.Desired);
        if (!inOrderOnce || !converged)
        {
            output.WriteLine($"case {number} failed: steps {string.Join(", ", steps.Select(s => s.ToString()))}; applied [{string.Join(",", versions)}]; device {device.Twin.Desired.ToJsonString()} server {onServer["desired"]?.ToJsonString()}");
        }

        return inOrderOnce && converged;
    }

    [Fact]
    public async Task ServerRestartedWhileTheOperatorPatches_DeviceAppliesEveryVersionInOrderOnce_AndEndsInTheServersState()
    {
        using var data = new TempDirectory("enroll-server");
        var server = await TestServer.StartAsync(output, dataDirectory: data.Path);
        try
        {
            await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
            using var state = new TempDirectory();
            await using var device = DeviceHarness.Create(proxy.Endpoint, "twin-server-restart", state.Path, (await server.CreateTokenAsync()).Token, output, o => o.MaxAttempts = 50);
            var deviceId = (await device.Registration.StartAsync()).DeviceId;
            var applied = new ConcurrentQueue<long>();
            device.Twin.OnDesiredChanged((change, _) =>
            {
                applied.Enqueue(change.Version);
                return Task.CompletedTask;
            });
            await device.StartAgentsAsync();
            await PatchDesiredAsync(server, deviceId, new JsonObject { ["interval"] = 10 });
            await Eventually.ReturnsAsync(() => Task.FromResult(device.Twin.DesiredVersion), v => v == 1, Patience, "version 1 applied");

            // The server goes away with the device connected, comes back on the same data, and is patched twice more
            // before the device is back (the proxy points at the new server's port).
            await server.DisposeAsync();
            server = await TestServer.StartAsync(output, dataDirectory: data.Path);
            await PatchDesiredAsync(server, deviceId, new JsonObject { ["interval"] = 20 });
            await PatchDesiredAsync(server, deviceId, new JsonObject { ["mode"] = "eco", ["interval"] = null });
            proxy.ForwardTo(server.MqttEndpoint);
            await PatchDesiredAsync(server, deviceId, new JsonObject { ["led"] = true });

            await Eventually.ReturnsAsync(() => Task.FromResult(device.Twin.DesiredVersion), v => v == 4, Patience, "version 4 applied");
            Assert.Equal([1L, 2L, 3L, 4L], applied);
            var twin = await TwinAsync(server, deviceId);
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"mode":"eco","led":true}"""), device.Twin.Desired), device.Twin.Desired.ToJsonString());
            Assert.True(JsonNode.DeepEquals(twin["desired"], device.Twin.Desired));
            output.WriteLine($"applied [{string.Join(",", applied)}] across a server restart");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private static async Task PatchDesiredAsync(TestServer server, string deviceId, JsonObject patch)
    {
        using var request = new HttpRequestMessage(HttpMethod.Patch, $"/api/devices/{deviceId}/twin/desired")
        {
            Content = new StringContent(patch.ToJsonString(), Encoding.UTF8, "application/merge-patch+json"),
        };
        using var response = await server.Http.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"PATCH desired answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    private static async Task<JsonObject> TwinAsync(TestServer server, string deviceId) =>
        JsonNode.Parse(await server.Http.GetStringAsync(new Uri($"/api/devices/{deviceId}/twin", UriKind.Relative)))!.AsObject();
}
