namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    /// <summary>Five failures a minute: one failure costs 12 s.</summary>
    private const int Limit = 5;

    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    private static readonly TimeSpan PerFailure = Window / Limit;

    [Fact]
    public async Task CredentialFailures_UpToTheLimitWithinTheWindow_LimitTheKeyOnlyAtTheLimit()
    {
        var states = new List<Server.Registry.CredentialFailures>();
        for (var i = 0; i < Limit; i++)
        {
            states.Add(await Registry.RecordCredentialFailureAsync("client:guesser", Limit, Window, Now));
        }

        Assert.All(states.Take(Limit - 1), s => Assert.False(s.IsLimited(Limit, Window, Now)));
        Assert.Equal([4.0, 3, 2, 1, 0], states.Select(s => s.Remaining(Limit, Window, Now)));
        var last = states[^1];
        Assert.True(last.IsLimited(Limit, Window, Now));
        Assert.Equal(Now + PerFailure, last.LimitedUntil(Limit, Window));
        Assert.Equal(Now + Window, last.FullAt);
        Assert.Equal(last, await Registry.FindCredentialFailuresAsync("client:guesser", Now));
    }

    [Fact]
    public async Task CredentialFailures_TokensComeBackWithTime_OneEveryWindowOverLimit()
    {
        for (var i = 0; i < Limit; i++)
        {
            await Registry.RecordCredentialFailureAsync("client:guesser", Limit, Window, Now);
        }

        var oneBack = await Registry.FindCredentialFailuresAsync("client:guesser", Now + PerFailure);
        Assert.NotNull(oneBack);
        Assert.False(oneBack.IsLimited(Limit, Window, Now + PerFailure));
        Assert.Equal(1, oneBack.Remaining(Limit, Window, Now + PerFailure));
        Assert.True(oneBack.IsLimited(Limit, Window, Now + PerFailure - TimeSpan.FromMilliseconds(1)));

        // A failure after the refill takes the token that came back, from the later instant.
        var again = await Registry.RecordCredentialFailureAsync("client:guesser", Limit, Window, Now + PerFailure);
        Assert.Equal(Now + Window + PerFailure, again.FullAt);
        Assert.True(again.IsLimited(Limit, Window, Now + PerFailure));

        // A whole window after the last failure the bucket is full: the store says no failures.
        Assert.Null(await Registry.FindCredentialFailuresAsync("client:guesser", again.FullAt));
        var fresh = await Registry.RecordCredentialFailureAsync("client:guesser", Limit, Window, again.FullAt + TimeSpan.FromMinutes(5));
        Assert.Equal(again.FullAt + TimeSpan.FromMinutes(5) + PerFailure, fresh.FullAt);
    }

    [Fact]
    public async Task CredentialFailures_PastTheLimit_AreCountedAsADebt()
    {
        for (var i = 0; i < Limit + 2; i++)
        {
            await Registry.RecordCredentialFailureAsync("client:guesser", Limit, Window, Now);
        }

        var state = await Registry.FindCredentialFailuresAsync("client:guesser", Now);
        Assert.NotNull(state);
        Assert.Equal(-2, state.Remaining(Limit, Window, Now));
        Assert.Equal(Now + (3 * PerFailure), state.LimitedUntil(Limit, Window));
    }

    [Fact]
    public async Task CredentialFailures_RecordedConcurrently_AreAllCounted()
    {
        // 100 a 100 s: each failure moves the instant on by exactly one second.
        var answers = await ConcurrentlyAsync(60, _ => Registry.RecordCredentialFailureAsync("source:10.0.0.1", 100, TimeSpan.FromSeconds(100), Now));

        Assert.Equal(Now + TimeSpan.FromSeconds(60), (await Registry.FindCredentialFailuresAsync("source:10.0.0.1", Now))!.FullAt);
        // Every failure saw the one before it: the answers are the 60 distinct instants, none lost or doubled.
        Assert.Equal(Enumerable.Range(1, 60).Select(s => Now + TimeSpan.FromSeconds(s)), answers.Select(a => a.FullAt).Order());
    }

    [Fact]
    public async Task CredentialFailures_OfOneKey_LeaveOtherKeysFull()
    {
        for (var i = 0; i < Limit; i++)
        {
            await Registry.RecordCredentialFailureAsync("client:a", Limit, Window, Now);
        }

        Assert.Null(await Registry.FindCredentialFailuresAsync("client:b", Now));
        Assert.Null(await Registry.FindCredentialFailuresAsync("source:a", Now));
        var b = await Registry.RecordCredentialFailureAsync("client:b", Limit, Window, Now);
        Assert.Equal(Now + PerFailure, b.FullAt);
        Assert.Equal(Now + Window, (await Registry.FindCredentialFailuresAsync("client:a", Now))!.FullAt);
    }

    [Fact]
    public async Task CredentialFailures_Purged_LoseOnlyTheFullBuckets()
    {
        await Registry.RecordCredentialFailureAsync("client:old", Limit, Window, Now - TimeSpan.FromMinutes(10));
        await Registry.RecordCredentialFailureAsync("client:once", Limit, Window, Now);
        for (var i = 0; i < Limit; i++)
        {
            await Registry.RecordCredentialFailureAsync("client:limited", Limit, Window, Now);
        }

        var purged = await Registry.PurgeCredentialFailuresAsync(Now + TimeSpan.FromSeconds(1));

        Assert.Equal(1, purged);
        Assert.Equal(Now + PerFailure, (await Registry.FindCredentialFailuresAsync("client:once", Now))!.FullAt);
        var limited = await Registry.FindCredentialFailuresAsync("client:limited", Now + TimeSpan.FromSeconds(1));
        Assert.True(limited!.IsLimited(Limit, Window, Now + TimeSpan.FromSeconds(1)));
        // The purged key starts again from full, as it would have without the purge.
        Assert.Equal(Now + PerFailure, (await Registry.RecordCredentialFailureAsync("client:old", Limit, Window, Now)).FullAt);
    }

    [Fact]
    public async Task CredentialFailures_Listed_AreTheBucketsNotFullWithThePrefix_LatestFirst()
    {
        await Registry.RecordCredentialFailureAsync("client:old", Limit, Window, Now - TimeSpan.FromMinutes(10));
        await Registry.RecordCredentialFailureAsync("client:once", Limit, Window, Now);
        await Registry.RecordCredentialFailureAsync("client:twice", Limit, Window, Now);
        await Registry.RecordCredentialFailureAsync("client:twice", Limit, Window, Now);
        await Registry.RecordCredentialFailureAsync("source:1.2.3.4", Limit, Window, Now);
        await Registry.RecordCredentialFailureAsync("admin-client:x", Limit, Window, Now);

        var listed = await Registry.ListCredentialFailuresAsync("client:", Now, 10);
        var first = await Registry.ListCredentialFailuresAsync("client:", Now, 1);

        Assert.Equal(["client:twice", "client:once"], listed.Select(l => l.Key));
        Assert.Equal(Now + (2 * PerFailure), listed[0].FullAt);
        Assert.Equal(["client:twice"], first.Select(l => l.Key));
    }
}
