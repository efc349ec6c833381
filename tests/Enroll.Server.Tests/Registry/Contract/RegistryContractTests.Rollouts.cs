using System.Text.Json.Nodes;
using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static readonly Dictionary<string, string> Everyone = [];

    private RolloutRecord Rollout(string orgId = "acme", int rate = 60, string name = "update") =>
        new(RolloutRecord.NewId(), orgId, "{}", name, """{"v":2}""", TimeSpan.FromHours(1), rate, Now);

    [Fact]
    public async Task CreateRollout_TargetsTheActiveDevicesOfTheOrg_ThatMatchEveryMetadataAndReportedValue()
    {
        var match = await CreateDeviceWithMetadataAsync("rol-match", """{"site":"north","floor":3}""");
        var wrongSite = await CreateDeviceWithMetadataAsync("rol-south", """{"site":"south","floor":3}""");
        var wrongFirmware = await CreateDeviceWithMetadataAsync("rol-old", """{"site":"north","floor":3}""");
        var revoked = await CreateDeviceWithMetadataAsync("rol-revoked", """{"site":"north","floor":3}""");
        var otherOrg = await CreateDeviceWithMetadataAsync("rol-other", """{"site":"north","floor":3}""", orgId: "globex");
        foreach (var device in new[] { match, wrongSite, revoked, otherOrg })
        {
            await Registry.PatchReportedAsync(device.DeviceId, (JsonObject)JsonNode.Parse("""{"fw":"1.2"}""")!, Now);
        }

        await Registry.PatchReportedAsync(wrongFirmware.DeviceId, (JsonObject)JsonNode.Parse("""{"fw":"1.1"}""")!, Now);
        await Registry.RevokeDeviceAsync(revoked.DeviceId, Now);
        var filter = new Dictionary<string, string> { ["metadata.site"] = "north", ["metadata.floor"] = "3", ["reported.fw"] = "1.2" };

        var stored = await Registry.CreateRolloutAsync(Rollout() with { Filter = RolloutFilter.Json(filter) }, filter);
        var all = await Registry.CreateRolloutAsync(Rollout(), Everyone);

        Assert.Equal(1, stored.Total);
        Assert.Equal(3, all.Total); // every active acme device
        var progress = await Registry.GetRolloutAsync(stored.RolloutId);
        Assert.NotNull(progress);
        Assert.Equal(stored, progress.Rollout);
        Assert.Equal((1, 0), (progress.Waiting, progress.Refused));
        Assert.Empty(progress.Commands);
        Assert.False(progress.IsDone);
        Assert.Null(await Registry.GetRolloutAsync("rol_nobody"));

        var queued = await Registry.AdvanceRolloutsAsync(Now);
        Assert.Contains(queued, c => c.DeviceId == match.DeviceId && c.RolloutId == stored.RolloutId && c.Name == "update" && c.Payload == """{"v":2}""");
    }

    [Fact]
    public async Task AdvanceRollouts_QueuesAtTheRate_NeverMoreThanAMinutesWorthAfterAPause()
    {
        for (var i = 0; i < 5; i++)
        {
            await CreateDeviceAsync($"rol-rate-{i}");
        }

        var rollout = await Registry.CreateRolloutAsync(Rollout(rate: 2), Everyone);
        var start = Now;

        var counts = new List<int> { (await Registry.AdvanceRolloutsAsync(start)).Count, (await Registry.AdvanceRolloutsAsync(start)).Count };
        counts.Add((await Registry.AdvanceRolloutsAsync(start + TimeSpan.FromSeconds(29))).Count);
        counts.Add((await Registry.AdvanceRolloutsAsync(start + TimeSpan.FromSeconds(30))).Count);
        counts.Add((await Registry.AdvanceRolloutsAsync(start + TimeSpan.FromMinutes(10))).Count);
        counts.Add((await Registry.AdvanceRolloutsAsync(start + TimeSpan.FromMinutes(10))).Count);
        counts.Add((await Registry.AdvanceRolloutsAsync(start + TimeSpan.FromMinutes(10.5))).Count);
        counts.Add((await Registry.AdvanceRolloutsAsync(start + TimeSpan.FromMinutes(20))).Count);

        Assert.Equal([1, 0, 0, 1, 2, 0, 1, 0], counts);
        var progress = await Registry.GetRolloutAsync(rollout.RolloutId);
        Assert.Equal(0, progress!.Waiting);
        Assert.Equal(new Dictionary<string, int> { [CommandStatuses.Queued] = 5 }, progress.Commands);
        var commands = await Registry.ListCommandsAsync(null, null, 100);
        Assert.Equal(5, commands.Select(c => c.DeviceId).Distinct().Count());
        Assert.All(commands, c => Assert.Equal(rollout.RolloutId, c.RolloutId));
    }

    [Fact]
    public async Task AdvanceRollouts_ADeviceAtTheOutstandingLimit_IsRefused_AndTheCountsFollowTheCommands()
    {
        var busy = await CreateDeviceAsync("rol-busy");
        var idle = await CreateDeviceAsync("rol-idle");
        for (var i = 0; i < CommandLimits.MaxOutstandingPerDevice; i++)
        {
            await EnqueueAsync(busy.DeviceId);
        }

        var rollout = await Registry.CreateRolloutAsync(Rollout(rate: 100), Everyone);
        var queued = await Registry.AdvanceRolloutsAsync(Now + TimeSpan.FromMinutes(1));
        await Registry.RecordCommandResultAsync(queued.Single().CommandId, idle.DeviceId, CommandStatuses.Succeeded, null, null, Now);

        var progress = await Registry.GetRolloutAsync(rollout.RolloutId);
        Assert.Equal(idle.DeviceId, queued.Single().DeviceId);
        Assert.Equal((0, 1), (progress!.Waiting, progress.Refused));
        Assert.Equal(new Dictionary<string, int> { [CommandStatuses.Succeeded] = 1 }, progress.Commands);
        Assert.True(progress.IsDone);
    }

    [Fact]
    public async Task ConcurrentAdvances_QueueEachTargetOnce()
    {
        for (var i = 0; i < 30; i++)
        {
            await CreateDeviceAsync($"rol-once-{i}");
        }

        await Registry.CreateRolloutAsync(Rollout(rate: 10), Everyone);
        await Registry.CreateRolloutAsync(Rollout(rate: 10_000, name: "other"), Everyone);
        var now = Now;

        var batches = await ConcurrentlyAsync(10, i => Registry.AdvanceRolloutsAsync(now + TimeSpan.FromSeconds(i % 3)));

        // Concurrent advances may skip a rollout another is advancing; a later one takes what is left.
        var queued = batches.SelectMany(b => b).Concat(await Registry.AdvanceRolloutsAsync(now + TimeSpan.FromMinutes(1))).ToList();
        Assert.Equal(queued.Count, queued.Select(c => (c.RolloutId, c.DeviceId)).Distinct().Count());
        Assert.Equal(30, queued.Count(c => c.Name == "other"));
        Assert.InRange(queued.Count(c => c.Name == "update"), 2, 11); // one at the start, at most a minute's worth a minute later
        var stored = await Registry.ListCommandsAsync(null, null, 1000);
        Assert.Equal(queued.Select(c => c.CommandId).Order(StringComparer.Ordinal), stored.Select(c => c.CommandId).Order(StringComparer.Ordinal));
    }
}
