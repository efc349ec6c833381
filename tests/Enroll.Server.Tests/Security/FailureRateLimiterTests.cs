using Enroll.Server.Registry;
using Enroll.Server.Security;
using Enroll.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Server.Tests.Security;

/// <summary>
/// The limiter against a real registry (SQLite): the limit is exact with many checks of one key in flight, concurrent
/// valid checks are never refused, and what one limiter records another on the same registry refuses.
/// </summary>
public sealed class FailureRateLimiterTests : IAsyncLifetime
{
    private const int Limit = 5;
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private readonly TempDirectory _folder = new("enroll-limiter");
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
    private SqliteRegistry _registry = null!;

    public Task InitializeAsync()
    {
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _registry.DisposeAsync();
        _folder.Dispose();
    }

    private FailureRateLimiter Limiter() => new(_clock, Limit, 100, Window, _registry, NullLogger.Instance, keyPrefix: "");

    [Fact]
    public async Task TwentyValidChecksOfOneClientAtOnce_AreAllLetThrough_FiveAtATime()
    {
        var limiter = Limiter();

        var reservations = Enumerable.Range(0, 20).Select(_ => limiter.ReserveAsync("racer", "10.0.0.1", CancellationToken.None).AsTask()).ToList();
        await Task.WhenAll(reservations.Take(Limit));

        // Five hold the five tokens; the others wait rather than being refused.
        Assert.All(reservations.Take(Limit), r => Assert.Null(r.Result));
        Assert.All(reservations.Skip(Limit), r => Assert.False(r.IsCompleted));

        // Each valid check that ends lets exactly one waiting check through.
        for (var done = Limit + 1; done <= 20; done++)
        {
            var waiting = reservations.Where(r => !r.IsCompleted).ToList();
            limiter.Refund("racer", "10.0.0.1");
            await Task.WhenAny(waiting).WaitAsync(TimeSpan.FromSeconds(30));

            Assert.Equal(done, reservations.Count(r => r.IsCompleted));
        }

        Assert.All(reservations, r => Assert.Null(r.Result));
        Assert.Null(await _registry.FindCredentialFailuresAsync("client:racer", _clock.GetUtcNow()));
    }

    [Fact]
    public async Task TwentyFailingChecksOfOneClientAtOnce_CheckExactlyTheLimit_AndRefuseTheRest()
    {
        var limiter = Limiter();

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Run(async () =>
        {
            if (await limiter.ReserveAsync("guesser", null, CancellationToken.None) is { } wait)
            {
                return wait;
            }

            await limiter.FailedAsync("guesser", null, CancellationToken.None);
            return (TimeSpan?)null;
        })));

        Assert.Equal(Limit, outcomes.Count(o => o is null));
        Assert.All(outcomes.Where(o => o is not null), o => Assert.InRange(o!.Value, TimeSpan.FromMilliseconds(1), Window / Limit));
        var recorded = await _registry.FindCredentialFailuresAsync("client:guesser", _clock.GetUtcNow());
        Assert.Equal(0, recorded!.Remaining(Limit, Window, _clock.GetUtcNow()));
    }

    [Fact]
    public async Task AKeyLimitedByOneInstance_IsRefusedByAnotherAfterOneMoreCheckedFailure_OrAtOnceWhenItLoads()
    {
        var a = Limiter();
        var b = Limiter();
        Assert.Null(await b.ReserveAsync("guesser", null, CancellationToken.None));
        await b.FailedAsync("guesser", null, CancellationToken.None);

        for (var i = 0; i < Limit - 1; i++)
        {
            Assert.Null(await a.ReserveAsync("guesser", null, CancellationToken.None));
            await a.FailedAsync("guesser", null, CancellationToken.None);
        }

        Assert.True(a.IsClientLimited("guesser", out _));
        // B last heard of the key after its own failure (4 tokens left): it checks one more, and the store's answer tells it.
        Assert.False(b.IsClientLimited("guesser", out _));
        Assert.Null(await b.ReserveAsync("guesser", null, CancellationToken.None));
        await b.FailedAsync("guesser", null, CancellationToken.None);
        Assert.True(b.IsClientLimited("guesser", out _));
        Assert.NotNull(await b.ReserveAsync("guesser", null, CancellationToken.None));

        // A third instance starting now loads the limited key: refused before any check.
        var c = Limiter();
        await c.LoadAsync(CancellationToken.None);
        Assert.True(c.IsClientLimited("guesser", out var wait));
        Assert.NotNull(await c.ReserveAsync("guesser", null, CancellationToken.None));

        // The failure past the limit is a debt: two tokens' time before the next attempt, on every instance.
        Assert.Equal(2 * (Window / Limit), wait);
        _clock.Advance(2 * (Window / Limit));
        Assert.False(a.IsClientLimited("guesser", out _));
        Assert.False(c.IsClientLimited("guesser", out _));
    }

    [Fact]
    public async Task ARegistryThatCannotRecord_LeavesTheLimitToTheInstance()
    {
        var limiter = Limiter();
        await _registry.DisposeAsync();

        for (var i = 0; i < Limit; i++)
        {
            Assert.Null(await limiter.ReserveAsync("guesser", null, CancellationToken.None));
            await limiter.FailedAsync("guesser", null, CancellationToken.None);
        }

        Assert.NotNull(await limiter.ReserveAsync("guesser", null, CancellationToken.None));
        Assert.Null(await limiter.ReserveAsync("valid", null, CancellationToken.None));
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
    }
}
