using Enroll.Protocol.Admin;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static ConsoleSession Session(string id, string op, DateTimeOffset at, bool admin = false) =>
        new(id, op, admin, "csrf-" + id, at, at.AddHours(12), at);

    [Fact]
    public async Task Operators_AddListFind_NameIsUnique_AndRemovedOnesAreNotFoundNorReused()
    {
        Assert.True(await Registry.AddOperatorAsync(new OperatorAccount("alice", "hash-a", Now, "admin", null)));
        Assert.True(await Registry.AddOperatorAsync(new OperatorAccount("bob", "hash-b", Now, null, null)));
        Assert.False(await Registry.AddOperatorAsync(new OperatorAccount("alice", "hash-c", Now, "admin", null)));

        var alice = await Registry.FindOperatorByKeyHashAsync("hash-a");
        Assert.Equal(new OperatorAccount("alice", "hash-a", Now, "admin", null), alice);
        Assert.Null(await Registry.FindOperatorByKeyHashAsync("hash-c"));

        Assert.True(await Registry.RemoveOperatorAsync("alice", Now.AddMinutes(1)));
        Assert.False(await Registry.RemoveOperatorAsync("alice", Now.AddMinutes(2)));
        Assert.False(await Registry.RemoveOperatorAsync("nobody", Now));
        Assert.Null(await Registry.FindOperatorByKeyHashAsync("hash-a"));
        Assert.False(await Registry.AddOperatorAsync(new OperatorAccount("alice", "hash-d", Now, "admin", null)));

        var all = await Registry.ListOperatorsAsync();
        Assert.Equal(["alice", "bob"], all.Select(o => o.Name));
        Assert.Equal(Now.AddMinutes(1), all[0].RemovedAt);
        Assert.Null(all[1].RemovedAt);
    }

    [Fact]
    public async Task Sessions_AreFoundWhileLive_NotWhenExpiredIdleDeletedOrTheirOperatorRemoved()
    {
        await Registry.AddOperatorAsync(new OperatorAccount("carol", "hash-c", Now, "admin", null));
        await Registry.CreateSessionAsync(Session("s1", "carol", Now));
        await Registry.CreateSessionAsync(Session("s2", "carol", Now));
        await Registry.CreateSessionAsync(Session("s3", OperatorIdentityName.Admin, Now, admin: true));

        Assert.Equal(Session("s1", "carol", Now), await Registry.FindSessionAsync("s1", Now, Now.AddHours(-1)));
        Assert.True((await Registry.FindSessionAsync("s3", Now, Now.AddHours(-1)))!.IsAdmin);
        Assert.Null(await Registry.FindSessionAsync("nope", Now, Now.AddHours(-1)));

        // Idle: not seen since the idle limit; touching moves last_seen (never back).
        Assert.Null(await Registry.FindSessionAsync("s1", Now.AddMinutes(61), Now.AddMinutes(1)));
        await Registry.TouchSessionAsync("s1", Now.AddMinutes(30));
        await Registry.TouchSessionAsync("s1", Now.AddMinutes(10));
        Assert.Equal(Now.AddMinutes(30), (await Registry.FindSessionAsync("s1", Now.AddMinutes(61), Now.AddMinutes(1)))!.LastSeen);

        // Expired: at or past expires_at, however recently seen.
        Assert.Null(await Registry.FindSessionAsync("s1", Now.AddHours(12), Now.AddHours(11)));

        Assert.True(await Registry.DeleteSessionAsync("s2"));
        Assert.False(await Registry.DeleteSessionAsync("s2"));
        Assert.Null(await Registry.FindSessionAsync("s2", Now, Now.AddHours(-1)));

        await Registry.CreateSessionAsync(Session("s4", "carol", Now));
        Assert.True(await Registry.RemoveOperatorAsync("carol", Now));
        Assert.Null(await Registry.FindSessionAsync("s1", Now, Now.AddHours(-1)));
        Assert.Null(await Registry.FindSessionAsync("s4", Now, Now.AddHours(-1)));
        Assert.NotNull(await Registry.FindSessionAsync("s3", Now, Now.AddHours(-1)));
    }

    [Fact]
    public async Task Sessions_DeleteAllOfAnOperator_AndPruneDeletesExpiredAndIdleOnly()
    {
        await Registry.AddOperatorAsync(new OperatorAccount("dan", "hash-d", Now, "admin", null));
        await Registry.CreateSessionAsync(Session("d1", "dan", Now));
        await Registry.CreateSessionAsync(Session("d2", "dan", Now));
        await Registry.CreateSessionAsync(Session("a1", OperatorIdentityName.Admin, Now, admin: true));
        Assert.Equal(2, await Registry.DeleteOperatorSessionsAsync("dan"));
        Assert.Null(await Registry.FindSessionAsync("d1", Now, Now.AddHours(-1)));

        await Registry.CreateSessionAsync(Session("old", OperatorIdentityName.Admin, Now.AddHours(-13), admin: true));
        await Registry.CreateSessionAsync(Session("idle", OperatorIdentityName.Admin, Now.AddHours(-2), admin: true));
        Assert.Equal(2, await Registry.PruneSessionsAsync(Now, Now.AddHours(-1)));
        Assert.NotNull(await Registry.FindSessionAsync("a1", Now, Now.AddHours(-1)));
    }

    [Fact]
    public async Task Audit_AppendsWithIncreasingIds_ListsNewestFirst_PagesWithBefore_AndFilters()
    {
        var ids = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(await Registry.AppendAuditAsync(new AuditEntry
            {
                At = Now.AddSeconds(i),
                Operator = i % 2 == 0 ? "alice" : "bob",
                Action = i < 3 ? "token.create" : "device.revoke",
                Target = i == 0 ? null : "t" + i,
                Remote = "10.0.0." + i,
                Status = 200 + i,
                Detail = i == 4 ? "reason: lost" : null,
            }));
        }

        Assert.Equal(ids.Order(), ids);
        var all = await Registry.ListAuditAsync(10, null, null, null);
        Assert.Equal(ids.AsEnumerable().Reverse(), all.Select(e => e.Id));
        Assert.Equal(new AuditEntry { Id = ids[4], At = Now.AddSeconds(4), Operator = "alice", Action = "device.revoke", Target = "t4", Remote = "10.0.0.4", Status = 204, Detail = "reason: lost" }, all[0]);
        Assert.Null(all[^1].Target);

        var page = await Registry.ListAuditAsync(2, ids[3], null, null);
        Assert.Equal([ids[2], ids[1]], page.Select(e => e.Id));
        Assert.Equal([ids[4], ids[2], ids[0]], (await Registry.ListAuditAsync(10, null, "alice", null)).Select(e => e.Id));
        Assert.Equal([ids[2], ids[0]], (await Registry.ListAuditAsync(10, null, "alice", "token.create")).Select(e => e.Id));
        Assert.Empty(await Registry.ListAuditAsync(10, null, "nobody", null));
    }

    private static class OperatorIdentityName
    {
        public const string Admin = "admin";
    }
}
