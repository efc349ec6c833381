using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Registry;

/// <summary>The registry change feed: what an announcement carries, how observers get it, how the listener backs off.</summary>
public sealed class RegistryChangesTests(ITestOutputHelper output)
{
    [Fact]
    public async Task InProcess_AnAnnouncement_ReachesEveryObserver_EvenWhenOneFails_AndNoneAfterItIsDisposed()
    {
        var changes = new InProcessRegistryChanges(NullLogger<InProcessRegistryChanges>.Instance);
        var seen = new List<RegistryChange>();
        using (changes.Observe(_ => throw new InvalidOperationException("observer fails")))
        {
            var observation = changes.Observe(change =>
            {
                seen.Add(change);
                return Task.CompletedTask;
            });

            await changes.AnnounceAsync(new RegistryChange("device_revoked", "dev-1"));
            observation.Dispose();
            await changes.AnnounceAsync(new RegistryChange(RegistryChange.Keys));
        }

        Assert.Equal([new RegistryChange("device_revoked", "dev-1")], seen);
    }

    [Fact]
    public async Task ARotation_IsAnnouncedAsAKeysChange()
    {
        await using var server = await TestServer.StartAsync(output);
        var seen = new List<RegistryChange>();
        using var observation = server.Host.Services.GetRequiredService<IRegistryChanges>().Observe(change =>
        {
            lock (seen)
            {
                seen.Add(change);
            }

            return Task.CompletedTask;
        });

        await server.Host.Services.GetRequiredService<PublishedKeys>().RotateAsync();

        Assert.Contains(new RegistryChange(RegistryChange.Keys), seen);
    }

    [Theory]
    [InlineData("device_revoked", "dev-1")]
    [InlineData("keys", null)]
    [InlineData("operation_decided", "op \"quoted\" \u00e9")]
    public void Postgres_ANotificationPayload_RoundTrips(string kind, string? id)
    {
        var change = new RegistryChange(kind, id);

        Assert.Equal(change, PostgresRegistryChanges.Deserialize(PostgresRegistryChanges.Serialize(change)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("""{"id":"x"}""")]
    [InlineData("""{"kind":""}""")]
    [InlineData("""{"kind":7}""")]
    public void Postgres_AnUnreadablePayload_IsNoChange(string payload) =>
        Assert.Null(PostgresRegistryChanges.Deserialize(payload));

    [Theory]
    [InlineData(1, 0.0, 125)]
    [InlineData(1, 0.999, 250)]
    [InlineData(3, 0.0, 500)]
    [InlineData(20, 0.0, 15_000)]
    [InlineData(20, 0.999, 30_000)]
    public void Postgres_TheReconnectWait_DoublesFrom250MsTo30s_SpreadOverHalfToAll(int failures, double random, int expectedMs)
    {
        using var changes = new PostgresRegistryChanges("Host=127.0.0.1;Database=none;Username=none", null, TimeProvider.System, NullLogger<PostgresRegistryChanges>.Instance, () => random);

        Assert.Equal(expectedMs, changes.Backoff(failures).TotalMilliseconds, 0.5 * expectedMs / 100);
    }
}
