using System.Text.Json.Nodes;
using Enroll.Protocol.Twins;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static JsonObject Patch(string json) => (JsonObject)JsonNode.Parse(json)!;

    private static void AssertJson(string expected, string actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), JsonNode.Parse(actual)), $"expected {expected}, was {actual}");

    [Fact]
    public async Task Twin_OfANewDevice_IsEmptyAtVersionZero()
    {
        var device = await CreateDeviceAsync("twin-new");

        var twin = await Registry.GetTwinAsync(device.DeviceId);

        Assert.NotNull(twin);
        Assert.Equal(TwinRecord.Empty(device.DeviceId), twin);
        Assert.Empty(twin.DesiredDocument());
        Assert.Empty(twin.ReportedDocument());
    }

    [Fact]
    public async Task Twin_OfAnUnknownDevice_IsNullAndCannotBePatched()
    {
        Assert.Null(await Registry.GetTwinAsync("dev-nobody"));
        Assert.Equal(DesiredPatchResult.NoDevice, (await Registry.PatchDesiredAsync("dev-nobody", Patch("""{"a":1}"""), null, Now)).Result);
        Assert.Equal(ReportedPatchResult.NoDevice, (await Registry.PatchReportedAsync("dev-nobody", Patch("""{"a":1}"""), Now)).Result);
        Assert.Null(await Registry.DesiredSinceAsync("dev-nobody", 0));
    }

    [Fact]
    public async Task DesiredPatches_ApplyInOrderAsMergePatches_WithVersionsOneTwoThree()
    {
        var device = await CreateDeviceAsync("twin-order");

        var first = await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"mode":"eco","led":{"color":"red","blink":true}}"""), null, Now);
        Clock.Advance(TimeSpan.FromSeconds(1));
        var second = await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"led":{"blink":null},"rate":5}"""), ifVersion: 1, Now);
        Clock.Advance(TimeSpan.FromSeconds(1));
        var third = await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"mode":null,"led":{"color":"green"},"tags":["a","b"]}"""), null, Now);

        Assert.Equal([DesiredPatchResult.Applied, DesiredPatchResult.Applied, DesiredPatchResult.Applied], new[] { first.Result, second.Result, third.Result });
        Assert.Equal([1L, 2, 3], new[] { first.Version, second.Version, third.Version });
        const string expected = """{"led":{"color":"green"},"rate":5,"tags":["a","b"]}""";
        AssertJson(expected, third.Document!);
        var twin = await Registry.GetTwinAsync(device.DeviceId);
        Assert.NotNull(twin);
        AssertJson(expected, twin.Desired);
        Assert.Equal(3, twin.DesiredVersion);
        Assert.Equal(Now, twin.UpdatedAt);
        Assert.Equal(0, twin.ReportedVersion);
        AssertJson("{}", twin.Reported);
    }

    [Fact]
    public async Task DesiredPatch_WithAStaleIfVersion_IsRefusedWithTheCurrentVersionAndChangesNothing()
    {
        var device = await CreateDeviceAsync("twin-stale");
        await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"a":1}"""), null, Now);
        await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"b":2}"""), null, Now);
        var before = await Registry.GetTwinAsync(device.DeviceId);

        Clock.Advance(TimeSpan.FromMinutes(1));
        var stale = await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"a":9}"""), ifVersion: 1, Now);
        var ahead = await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"a":9}"""), ifVersion: 7, Now);

        Assert.Equal(new DesiredPatchOutcome(DesiredPatchResult.VersionMismatch, 2), stale);
        Assert.Equal(new DesiredPatchOutcome(DesiredPatchResult.VersionMismatch, 2), ahead);
        Assert.Equal(before, await Registry.GetTwinAsync(device.DeviceId));
        Assert.Equal(2, (await Registry.DesiredSinceAsync(device.DeviceId, 0))!.Patches.Count);
    }

    [Fact]
    public async Task Patches_OverTheLimits_AreRefusedWithTheReasonAndChangeNothing()
    {
        var device = await CreateDeviceAsync("twin-limits");
        await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"a":1}"""), null, Now);
        await Registry.PatchReportedAsync(device.DeviceId, Patch("""{"r":1}"""), Now);
        var before = await Registry.GetTwinAsync(device.DeviceId);
        var longKey = new JsonObject { [new string('k', TwinLimits.MaxKeyLength + 1)] = 1 };
        var tooBig = new JsonObject { ["blob"] = new string('x', TwinLimits.MaxDocumentBytes) };

        Clock.Advance(TimeSpan.FromMinutes(1));
        var desiredKey = await Registry.PatchDesiredAsync(device.DeviceId, longKey, null, Now);
        var desiredSize = await Registry.PatchDesiredAsync(device.DeviceId, tooBig, ifVersion: 1, Now);
        var reportedKey = await Registry.PatchReportedAsync(device.DeviceId, longKey, Now);
        var reportedSize = await Registry.PatchReportedAsync(device.DeviceId, tooBig, Now);

        Assert.Equal(new DesiredPatchOutcome(DesiredPatchResult.Refused, 1, Reason: TwinLimits.CheckPatch(longKey)), desiredKey);
        Assert.Equal(DesiredPatchResult.Refused, desiredSize.Result);
        Assert.Contains("bytes", desiredSize.Reason, StringComparison.Ordinal);
        Assert.Equal(new ReportedPatchOutcome(ReportedPatchResult.Refused, 1, Reason: TwinLimits.CheckPatch(longKey)), reportedKey);
        Assert.Equal(ReportedPatchResult.Refused, reportedSize.Result);
        Assert.Contains("bytes", reportedSize.Reason, StringComparison.Ordinal);
        Assert.NotNull(desiredKey.Reason);
        Assert.Equal(before, await Registry.GetTwinAsync(device.DeviceId));
        Assert.Single((await Registry.DesiredSinceAsync(device.DeviceId, 0))!.Patches);
    }

    [Fact]
    public async Task FirstPatch_OverTheLimits_LeavesTheTwinEmpty()
    {
        var device = await CreateDeviceAsync("twin-first-refused");

        var refused = await Registry.PatchDesiredAsync(device.DeviceId, new JsonObject { ["blob"] = new string('x', TwinLimits.MaxDocumentBytes) }, null, Now);

        Assert.Equal(DesiredPatchResult.Refused, refused.Result);
        Assert.Equal(TwinRecord.Empty(device.DeviceId), await Registry.GetTwinAsync(device.DeviceId));
    }

    [Fact]
    public async Task DesiredSince_ReturnsExactlyTheLaterPatchesInOrder()
    {
        var device = await CreateDeviceAsync("twin-since");
        var patches = new[] { """{"a":1}""", """{"b":2}""", """{"a":null,"c":{"d":3}}""", """{"c":{"e":4}}""" };
        var times = new List<DateTimeOffset>();
        foreach (var patch in patches)
        {
            times.Add(Now);
            await Registry.PatchDesiredAsync(device.DeviceId, Patch(patch), null, Now);
            Clock.Advance(TimeSpan.FromSeconds(10));
        }

        var since = await Registry.DesiredSinceAsync(device.DeviceId, 2);
        var current = await Registry.DesiredSinceAsync(device.DeviceId, 4);

        Assert.NotNull(since);
        Assert.False(since.IsWholeDocument);
        Assert.Equal(4, since.Version);
        Assert.Equal([3L, 4], since.Patches.Select(p => p.Version));
        Assert.Equal([times[2], times[3]], since.Patches.Select(p => p.CreatedAt));
        AssertJson(patches[2], since.Patches[0].Patch);
        AssertJson(patches[3], since.Patches[1].Patch);
        Assert.NotNull(current);
        Assert.False(current.IsWholeDocument);
        Assert.Equal(4, current.Version);
        Assert.Empty(current.Patches);

        // Applying the patches after version 2 to the document at version 2 gives the current document.
        JsonNode document = Patch("""{"a":1,"b":2}""");
        foreach (var patch in since.Patches)
        {
            document = JsonMergePatch.Apply(document, JsonNode.Parse(patch.Patch))!;
        }

        AssertJson((await Registry.GetTwinAsync(device.DeviceId))!.Desired, document.ToJsonString());
    }

    [Fact]
    public async Task DesiredSince_AVersionAheadOfTheStore_GetsTheWholeDocument()
    {
        var device = await CreateDeviceAsync("twin-ahead");
        await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"a":1}"""), null, Now);

        var ahead = await Registry.DesiredSinceAsync(device.DeviceId, 5);

        Assert.NotNull(ahead);
        Assert.True(ahead.IsWholeDocument);
        Assert.Equal(1, ahead.Version);
        Assert.Empty(ahead.Patches);
        AssertJson("""{"a":1}""", ahead.Document!);
    }

    [Fact]
    public async Task Prune_KeepsTheNewestPerDevice_AndDesiredSinceAnswersTheWholeDocumentPastIt()
    {
        var busy = await CreateDeviceAsync("twin-prune-busy");
        var quiet = await CreateDeviceAsync("twin-prune-quiet");
        for (var i = 1; i <= 6; i++)
        {
            await Registry.PatchDesiredAsync(busy.DeviceId, new JsonObject { ["n"] = i }, null, Now);
            Clock.Advance(TimeSpan.FromMinutes(1));
        }

        await Registry.PatchDesiredAsync(quiet.DeviceId, Patch("""{"q":1}"""), null, Now);
        var old = Now;
        Clock.Advance(TimeSpan.FromDays(8));
        await Registry.PatchDesiredAsync(busy.DeviceId, new JsonObject { ["n"] = 7 }, null, Now);

        // Everything but busy's version 7 is older than the cut-off; each device keeps its newest 3 anyway.
        var pruned = await Registry.PruneDesiredHistoryAsync(old + TimeSpan.FromSeconds(1), keepPerDevice: 3);

        Assert.Equal(4, pruned); // busy's versions 1..4
        Assert.Equal([5L, 6, 7], (await Registry.DesiredSinceAsync(busy.DeviceId, 4))!.Patches.Select(p => p.Version));
        var pastIt = await Registry.DesiredSinceAsync(busy.DeviceId, 2);
        Assert.NotNull(pastIt);
        Assert.True(pastIt.IsWholeDocument);
        Assert.Equal(7, pastIt.Version);
        AssertJson("""{"n":7}""", pastIt.Document!);
        Assert.Single((await Registry.DesiredSinceAsync(quiet.DeviceId, 0))!.Patches);
        Assert.Equal(0, await Registry.PruneDesiredHistoryAsync(old + TimeSpan.FromSeconds(1), keepPerDevice: 3));

        // Without a per-device floor, only the patches newer than the cut-off stay.
        Assert.Equal(3, await Registry.PruneDesiredHistoryAsync(old + TimeSpan.FromSeconds(1), keepPerDevice: 0));
        Assert.Equal([7L], (await Registry.DesiredSinceAsync(busy.DeviceId, 6))!.Patches.Select(p => p.Version));
        Assert.True((await Registry.DesiredSinceAsync(quiet.DeviceId, 0))!.IsWholeDocument);
    }

    [Fact]
    public async Task ConcurrentDesiredPatches_ToOneDevice_GetDistinctVersionsAndTheDocumentOfTheirOrder()
    {
        var device = await CreateDeviceAsync("twin-concurrent");

        var outcomes = await ConcurrentlyAsync(20, i => Registry.PatchDesiredAsync(device.DeviceId, new JsonObject { [$"p{i}"] = i, ["last"] = i }, null, Now));

        Assert.All(outcomes, o => Assert.Equal(DesiredPatchResult.Applied, o.Result));
        Assert.Equal(Enumerable.Range(1, 20).Select(v => (long)v), outcomes.Select(o => o.Version).Order());
        var history = await Registry.DesiredSinceAsync(device.DeviceId, 0);
        Assert.NotNull(history);
        Assert.Equal(Enumerable.Range(1, 20).Select(v => (long)v), history.Patches.Select(p => p.Version));
        JsonNode document = new JsonObject();
        foreach (var patch in history.Patches)
        {
            document = JsonMergePatch.Apply(document, JsonNode.Parse(patch.Patch))!;
        }

        var twin = await Registry.GetTwinAsync(device.DeviceId);
        Assert.NotNull(twin);
        Assert.Equal(20, twin.DesiredVersion);
        AssertJson(document.ToJsonString(), twin.Desired);
        var lastWriter = outcomes.Single(o => o.Version == 20);
        AssertJson(lastWriter.Document!, twin.Desired);
        Assert.Equal(20, twin.DesiredDocument().Count - 1); // p0..p19 and "last"
    }

    [Fact]
    public async Task ReportedVersions_AreIndependentOfDesired()
    {
        var device = await CreateDeviceAsync("twin-reported");
        await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"rate":5}"""), null, Now);
        await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"rate":6}"""), null, Now);
        await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"rate":7}"""), null, Now);

        Clock.Advance(TimeSpan.FromSeconds(3));
        var first = await Registry.PatchReportedAsync(device.DeviceId, Patch("""{"rate":7,"fw":"1.2"}"""), Now);
        var second = await Registry.PatchReportedAsync(device.DeviceId, Patch("""{"fw":null,"uptime":12}"""), Now);

        Assert.Equal((ReportedPatchResult.Applied, 1L), (first.Result, first.Version));
        AssertJson("""{"rate":7,"fw":"1.2"}""", first.Document!);
        Assert.Equal(2, second.Version);
        var twin = await Registry.GetTwinAsync(device.DeviceId);
        Assert.NotNull(twin);
        Assert.Equal((3L, 2L), (twin.DesiredVersion, twin.ReportedVersion));
        AssertJson("""{"rate":7,"uptime":12}""", twin.Reported);
        AssertJson("""{"rate":7}""", twin.Desired);
        Assert.Equal(Now, twin.UpdatedAt);
        Assert.Equal(3, (await Registry.DesiredSinceAsync(device.DeviceId, 0))!.Patches.Count); // reported patches keep no history

        var desiredAgain = await Registry.PatchDesiredAsync(device.DeviceId, Patch("""{"rate":8}"""), ifVersion: 3, Now);
        Assert.Equal(4, desiredAgain.Version);
        Assert.Equal(2, (await Registry.GetTwinAsync(device.DeviceId))!.ReportedVersion);
    }
}
