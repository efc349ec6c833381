using System.Text.Json.Nodes;
using Enroll.Protocol.Twins;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static TwinFilter Where(string orgId, params string[] conditions) =>
        new(orgId, conditions.Select(c => TwinCondition.Parse(c, out var problem) ?? throw new ArgumentException(problem)).ToList());

    private protected async Task<DeviceRecord> CreateDeviceWithMetadataAsync(string clientId, string metadataJson, string orgId = "acme")
    {
        var outcome = await Registry.RegisterDeviceAsync(Register(clientId, orgId: orgId) with { MetadataJson = metadataJson });
        Assert.Equal(RegisterDeviceResult.Created, outcome.Result);
        return outcome.Device!;
    }

    [Fact]
    public async Task FleetPatch_ByOrganisation_PatchesEachActiveDeviceAtItsOwnNextVersion_AndNoOther()
    {
        var ahead = await CreateDeviceAsync("fleet-ahead");
        var fresh = await CreateDeviceAsync("fleet-fresh");
        var revoked = await CreateDeviceAsync("fleet-revoked");
        var elsewhere = await CreateDeviceAsync("fleet-elsewhere", orgId: "globex");
        await Registry.PatchDesiredAsync(ahead.DeviceId, Patch("""{"a":1}"""), null, Now);
        await Registry.PatchDesiredAsync(ahead.DeviceId, Patch("""{"b":2}"""), null, Now);
        await Registry.RevokeDeviceAsync(revoked.DeviceId, Now);

        Clock.Advance(TimeSpan.FromMinutes(1));
        var outcome = await Registry.PatchDesiredWhereAsync(Where("acme"), Patch("""{"mode":"eco","a":null}"""), Now);

        Assert.Equal(0, outcome.Refused);
        Assert.Null(outcome.FirstRefusal);
        Assert.Equal(
            new[] { new FleetPatched(ahead.DeviceId, 3), new FleetPatched(fresh.DeviceId, 1) }.OrderBy(p => p.DeviceId, StringComparer.Ordinal),
            outcome.Touched.OrderBy(p => p.DeviceId, StringComparer.Ordinal));
        var aheadTwin = await Registry.GetTwinAsync(ahead.DeviceId);
        AssertJson("""{"b":2,"mode":"eco"}""", aheadTwin!.Desired);
        Assert.Equal(Now, aheadTwin.UpdatedAt);
        AssertJson("""{"mode":"eco"}""", (await Registry.GetTwinAsync(fresh.DeviceId))!.Desired);
        var history = await Registry.DesiredSinceAsync(fresh.DeviceId, 0);
        Assert.Equal(1, history!.Patches.Single().Version);
        AssertJson("""{"mode":"eco","a":null}""", history.Patches[0].Patch);
        Assert.Equal(TwinRecord.Empty(revoked.DeviceId), await Registry.GetTwinAsync(revoked.DeviceId));
        Assert.Equal(TwinRecord.Empty(elsewhere.DeviceId), await Registry.GetTwinAsync(elsewhere.DeviceId));
    }

    [Fact]
    public async Task FleetPatch_ByMetadataAndReportedValues_PatchesOnlyTheDevicesMeetingEveryCondition()
    {
        var berlinOld = await CreateDeviceWithMetadataAsync("fleet-b-old", """{"site":"berlin","rack":{"row":3}}""");
        var berlinNew = await CreateDeviceWithMetadataAsync("fleet-b-new", """{"site":"berlin","rack":{"row":4}}""");
        var munichOld = await CreateDeviceWithMetadataAsync("fleet-m-old", """{"site":"munich"}""");
        var noMetadata = await CreateDeviceAsync("fleet-none");
        await Registry.PatchReportedAsync(berlinOld.DeviceId, Patch("""{"firmware":"1.2","rate":5}"""), Now);
        await Registry.PatchReportedAsync(berlinNew.DeviceId, Patch("""{"firmware":"1.3"}"""), Now);
        await Registry.PatchReportedAsync(munichOld.DeviceId, Patch("""{"firmware":"1.2"}"""), Now);
        await Registry.PatchReportedAsync(noMetadata.DeviceId, Patch("""{"firmware":"1.2"}"""), Now);

        var bySite = await Registry.PatchDesiredWhereAsync(Where("acme", "metadata.site=berlin"), Patch("""{"s":1}"""), Now);
        var byFirmware = await Registry.PatchDesiredWhereAsync(Where("acme", "reported.firmware=1.2"), Patch("""{"f":1}"""), Now);
        var byBoth = await Registry.PatchDesiredWhereAsync(Where("acme", "metadata.site=berlin", "reported.firmware=1.2"), Patch("""{"both":1}"""), Now);
        var byNumberAndPath = await Registry.PatchDesiredWhereAsync(Where("acme", "reported.rate=5", "metadata.rack.row=3"), Patch("""{"n":1}"""), Now);
        var byNothing = await Registry.PatchDesiredWhereAsync(Where("acme", "reported.firmware=9"), Patch("""{"x":1}"""), Now);

        static string[] Ids(FleetPatchOutcome o) => o.Touched.Select(t => t.DeviceId).Order(StringComparer.Ordinal).ToArray();
        static string[] Sorted(params DeviceRecord[] d) => d.Select(x => x.DeviceId).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(Sorted(berlinOld, berlinNew), Ids(bySite));
        Assert.Equal(Sorted(berlinOld, munichOld, noMetadata), Ids(byFirmware));
        Assert.Equal(Sorted(berlinOld), Ids(byBoth));
        Assert.Equal(Sorted(berlinOld), Ids(byNumberAndPath));
        Assert.Empty(byNothing.Touched);
        var twin = await Registry.GetTwinAsync(berlinOld.DeviceId);
        AssertJson("""{"s":1,"f":1,"both":1,"n":1}""", twin!.Desired);
        Assert.Equal(4, twin.DesiredVersion);
        AssertJson("""{"s":1}""", (await Registry.GetTwinAsync(berlinNew.DeviceId))!.Desired);
    }

    [Fact]
    public async Task FleetPatch_OverTheLimitsForOneDevice_RefusesThatDeviceAndPatchesTheOthers()
    {
        var full = await CreateDeviceAsync("fleet-full");
        var roomy = await CreateDeviceAsync("fleet-roomy");
        await Registry.PatchDesiredAsync(full.DeviceId, new JsonObject { ["blob"] = new string('x', TwinLimits.MaxDocumentBytes - 100) }, null, Now);
        var before = await Registry.GetTwinAsync(full.DeviceId);

        var outcome = await Registry.PatchDesiredWhereAsync(Where("acme"), new JsonObject { ["more"] = new string('y', 200) }, Now);

        Assert.Equal([new FleetPatched(roomy.DeviceId, 1)], outcome.Touched);
        Assert.Equal(1, outcome.Refused);
        Assert.Contains("bytes", outcome.FirstRefusal, StringComparison.Ordinal);
        Assert.Equal(before, await Registry.GetTwinAsync(full.DeviceId));
        Assert.Single((await Registry.DesiredSinceAsync(full.DeviceId, 0))!.Patches);
    }

    [Fact]
    public async Task FleetPatch_OverSeveralBatches_PatchesEveryDeviceOnce()
    {
        var count = (TwinFleet.BatchSize * 2) + 7;
        var devices = new List<DeviceRecord>();
        for (var i = 0; i < count; i += 50)
        {
            devices.AddRange(await ConcurrentlyAsync(Math.Min(50, count - i), j => CreateDeviceAsync($"fleet-many-{i + j:D4}")));
        }

        var outcome = await Registry.PatchDesiredWhereAsync(Where("acme"), Patch("""{"wave":1}"""), Now);
        var again = await Registry.PatchDesiredWhereAsync(Where("acme"), Patch("""{"wave":2}"""), Now);

        Assert.Equal(devices.Select(d => d.DeviceId).Order(StringComparer.Ordinal), outcome.Touched.Select(t => t.DeviceId).Order(StringComparer.Ordinal));
        Assert.All(outcome.Touched, t => Assert.Equal(1, t.Version));
        Assert.Equal(count, again.Touched.Count);
        Assert.All(again.Touched, t => Assert.Equal(2, t.Version));
    }

    [Theory]
    [InlineData("site=berlin")]
    [InlineData("metadata=berlin")]
    [InlineData("metadata.=x")]
    [InlineData("desired.mode=eco")]
    [InlineData("=x")]
    [InlineData("reported.firmware")]
    public void TwinCondition_ThatIsNotMetadataOrReportedKeyEqualsValue_IsRefusedWithTheRule(string text)
    {
        Assert.Null(TwinCondition.Parse(text, out var problem));
        Assert.Contains("metadata.NAME or reported.NAME", problem, StringComparison.Ordinal);
    }
}
