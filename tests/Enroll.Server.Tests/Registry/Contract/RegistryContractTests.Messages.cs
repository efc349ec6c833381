namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    [Fact]
    public async Task Message_StoredTwice_IsStoredOnce_AndTheSecondStoreSaysSo()
    {
        var message = Message("dev-a", "m-1", payload: [1]);

        var first = await Registry.StoreMessageAsync(message);
        var second = await Registry.StoreMessageAsync(message with { Payload = new byte[] { 2 }, ReceivedAt = Now.AddSeconds(5) });
        var otherDevice = await Registry.StoreMessageAsync(message with { DeviceId = "dev-b" });

        Assert.True(first);
        Assert.False(second);
        Assert.True(otherDevice);
        var stored = await Registry.ListMessagesAsync("dev-a", 0, 10);
        Assert.Equal([1], Assert.Single(stored).Message.Payload.ToArray());
        Assert.Equal(2, await Registry.CountMessagesAsync(null));
    }

    [Fact]
    public async Task Message_ResentConcurrently_IsStoredOnce()
    {
        var message = Message("dev-a", "m-1");

        var results = await ConcurrentlyAsync(10, _ => Registry.StoreMessageAsync(message));

        Assert.Equal(1, results.Count(r => r));
        Assert.Equal(1, await Registry.CountMessagesAsync("dev-a"));
    }

    [Fact]
    public async Task Message_Stored_IsReadBackWithEveryField()
    {
        var full = Message("dev-a", "m-full", "logs/app", [0, 255, 10]) with
        {
            CreatedAt = T0.AddSeconds(-3),
            ContentType = "application/json",
            Properties = new Dictionary<string, string> { ["unit"] = "C", ["seq"] = "7" },
        };
        var bare = Message("dev-a", "m-bare", payload: []);

        await Registry.StoreMessageAsync(full);
        await Registry.StoreMessageAsync(bare);
        var stored = await Registry.ListMessagesAsync("dev-a", 0, 10);

        Assert.Equal(2, stored.Count);
        AssertSameMessage(full, stored[0].Message);
        AssertSameMessage(bare, stored[1].Message);
    }

    [Fact]
    public async Task Messages_GetIncreasingSequences_EvenWhenStoredConcurrently()
    {
        var concurrent = await ConcurrentlyAsync(20, i => Registry.StoreMessageAsync(Message($"dev-{i % 3}", $"m-{i}")));
        var lastBefore = (await Registry.RecentMessagesAsync(null, 1)).Single().Sequence;
        await Registry.StoreMessageAsync(Message("dev-0", "m-later"));

        Assert.All(concurrent, Assert.True);
        var all = await Registry.ListMessagesAsync(null, 0, 100);
        Assert.Equal(21, all.Count);
        Assert.Equal(21, all.Select(m => m.Sequence).Distinct().Count());
        Assert.Equal(all.Select(m => m.Sequence).Order(), all.Select(m => m.Sequence));
        Assert.True(all[^1].Sequence > lastBefore);
        Assert.Equal("m-later", all[^1].Message.MessageId);
    }

    [Fact]
    public async Task Messages_AreListedInPagesAfterASequence_OldestFirst_ByDevice()
    {
        for (var n = 0; n < 7; n++)
        {
            await Registry.StoreMessageAsync(Message(n % 2 == 0 ? "dev-even" : "dev-odd", $"m-{n}"));
        }

        var first = await Registry.ListMessagesAsync(null, 0, 3);
        var second = await Registry.ListMessagesAsync(null, first[^1].Sequence, 3);
        var third = await Registry.ListMessagesAsync(null, second[^1].Sequence, 3);
        var end = await Registry.ListMessagesAsync(null, third[^1].Sequence, 3);
        var even = await Registry.ListMessagesAsync("dev-even", 0, 10);

        Assert.Equal(["m-0", "m-1", "m-2"], first.Select(m => m.Message.MessageId));
        Assert.Equal(["m-3", "m-4", "m-5"], second.Select(m => m.Message.MessageId));
        Assert.Equal(["m-6"], third.Select(m => m.Message.MessageId));
        Assert.Empty(end);
        Assert.Equal(["m-0", "m-2", "m-4", "m-6"], even.Select(m => m.Message.MessageId));
        Assert.Empty(await Registry.ListMessagesAsync("dev-none", 0, 10));
    }

    [Fact]
    public async Task RecentMessages_AreTheNewestPage_OldestFirst_AndPageBackBeforeASequence()
    {
        for (var n = 0; n < 7; n++)
        {
            await Registry.StoreMessageAsync(Message(n % 2 == 0 ? "dev-even" : "dev-odd", $"m-{n}"));
        }

        var newest = await Registry.RecentMessagesAsync(null, 3);
        var before = await Registry.RecentMessagesAsync(null, 3, newest[0].Sequence);
        var oldest = await Registry.RecentMessagesAsync(null, 3, before[0].Sequence);
        var odd = await Registry.RecentMessagesAsync("dev-odd", 2);

        Assert.Equal(["m-4", "m-5", "m-6"], newest.Select(m => m.Message.MessageId));
        Assert.Equal(["m-1", "m-2", "m-3"], before.Select(m => m.Message.MessageId));
        Assert.Equal(["m-0"], oldest.Select(m => m.Message.MessageId));
        Assert.Equal(["m-3", "m-5"], odd.Select(m => m.Message.MessageId));
        Assert.Empty(await Registry.RecentMessagesAsync(null, 3, oldest[0].Sequence));
    }

    [Fact]
    public async Task Messages_AreCounted_InAllAndByDevice()
    {
        Assert.Equal(0, await Registry.CountMessagesAsync(null));
        for (var n = 0; n < 5; n++)
        {
            await Registry.StoreMessageAsync(Message(n < 3 ? "dev-a" : "dev-b", $"m-{n}"));
        }

        Assert.Equal(5, await Registry.CountMessagesAsync(null));
        Assert.Equal(3, await Registry.CountMessagesAsync("dev-a"));
        Assert.Equal(2, await Registry.CountMessagesAsync("dev-b"));
        Assert.Equal(0, await Registry.CountMessagesAsync("dev-none"));
    }

    private static void AssertSameMessage(IngestedMessage expected, IngestedMessage actual)
    {
        Assert.Equal(expected.Payload.ToArray(), actual.Payload.ToArray());
        Assert.Equal(expected.Properties.OrderBy(p => p.Key, StringComparer.Ordinal), actual.Properties.OrderBy(p => p.Key, StringComparer.Ordinal));
        Assert.Equal(expected with { Payload = actual.Payload, Properties = actual.Properties }, actual);
    }
}
