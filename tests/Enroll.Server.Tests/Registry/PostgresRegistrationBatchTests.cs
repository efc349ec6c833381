using Enroll.Server.Registry;
using Enroll.Testing;
using Npgsql;

namespace Enroll.Server.Tests.Registry;

/// <summary>
/// Group commit in the PostgreSQL store: registrations queued while a batch is in the database share the next
/// transaction, with the outcomes they would have had one by one, and a command that fails there fails alone. A row lock
/// held from outside holds the first batch, so the test knows which commands share the second.
/// </summary>
[Collection(PostgresGroup.Name)]
public sealed class PostgresRegistrationBatchTests(PostgresServer postgres)
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task RegistrationsQueuedBehindABatch_ShareOneTransaction_WithTheOutcomesTheyWouldHaveOneByOne()
    {
        var database = await postgres.CreateDatabaseAsync("batch");
        await using var registry = new PostgresRegistry(database);
        await registry.CreateProvisioningTokenAsync(new ProvisioningTokenRecord { Id = "pt-3", SecretHash = [3], OrgId = "acme", MaxUses = 3, CreatedAt = Now });
        await registry.RegisterDeviceAsync(Command("held", "dev-held"));
        await registry.RevokeDeviceAsync((await registry.RegisterDeviceAsync(Command("gone", "dev-gone"))).Device!.DeviceId, Now);
        var before = registry.RegistrationStatistics;

        var (first, queued) = await BehindAHeldBatchAsync(registry, database, () =>
        [
            .. Enumerable.Range(1, 5).Select(i => registry.RegisterDeviceAsync(Command($"spender-{i}", $"dev-spender-{i}") with { ProvisioningTokenId = "pt-3" })),
            .. Enumerable.Range(1, 3).Select(i => registry.RegisterDeviceAsync(Command("twin", $"dev-twin-{i}") with { Name = $"twin {i}" })),
            registry.RegisterDeviceAsync(Command("gone", "dev-gone-2")),
            registry.RegisterDeviceAsync(Command("other", "unused") with { DeviceId = "dev-held" }),
            registry.RegisterDeviceAsync(Command("nobody", "unused") with { DeviceId = "dev-missing" }),
            registry.RegisterDeviceAsync(Command("held", "unused") with { RegistrationToken = Token("jti-stale", "dev-someone-else") }),
            registry.RegisterDeviceAsync(Command("fresh", "dev-fresh") with { RegistrationToken = Token("jti-fresh", "dev-fresh") }),
        ]);

        Assert.Equal(RegisterDeviceResult.Updated, first.Result);
        Assert.Equal(
            [
                RegisterDeviceResult.Created, RegisterDeviceResult.Created, RegisterDeviceResult.Created, RegisterDeviceResult.TokenUsedUp, RegisterDeviceResult.TokenUsedUp,
                RegisterDeviceResult.Created, RegisterDeviceResult.Updated, RegisterDeviceResult.Updated,
                RegisterDeviceResult.Revoked, RegisterDeviceResult.OtherClient, RegisterDeviceResult.NotFound, RegisterDeviceResult.Stale, RegisterDeviceResult.Created,
            ],
            queued.Select(o => o.Result));
        Assert.Equal(["dev-twin-1"], queued[5..8].Select(o => o.Device!.DeviceId).Distinct());
        Assert.Equal("twin 3", queued[7].Device!.Name);
        Assert.Equal("twin 3", (await registry.FindDeviceByClientAsync("acme", "twin"))!.Name);
        Assert.Equal(3, (await registry.FindProvisioningTokenAsync("pt-3"))!.Uses);
        Assert.Equal(2 + 3 + 1 + 1, await registry.CountDevicesAsync());
        Assert.Equal(RegistrationTokenUse.Current, await registry.UseRegistrationTokenAsync("jti-fresh", "dev-fresh", Now, TimeSpan.FromMinutes(1)));
        Assert.Equal(RegistrationTokenUse.Unknown, await registry.UseRegistrationTokenAsync("jti-stale", "dev-someone-else", Now, TimeSpan.FromMinutes(1)));

        var after = registry.RegistrationStatistics;
        Assert.Equal((2, 1 + queued.Length, 0), (after.Batches - before.Batches, after.Commands - before.Commands, after.Fallbacks - before.Fallbacks));
    }

    [Fact]
    public async Task ARegistrationTheDatabaseRejectsInABatch_FailsAlone_AndTheOthersOfItsBatchCommit()
    {
        var database = await postgres.CreateDatabaseAsync("batch");
        await using var registry = new PostgresRegistry(database);
        await registry.RegisterDeviceAsync(Command("held", "dev-held"));
        var before = registry.RegistrationStatistics;

        // PostgreSQL text cannot hold a NUL character: the insert of this one fails in the database.
        await BehindAHeldBatchAsync(registry, database, () =>
        [
            .. Enumerable.Range(1, 9).Select(i => registry.RegisterDeviceAsync(Command($"client-{i}", $"dev-{i}") with { Name = i == 5 ? "bad\0name" : null })),
        ], expectFailures: true);

        var devices = await registry.ListDevicesAsync(null, 100);
        Assert.Equal(
            ["client-1", "client-2", "client-3", "client-4", "client-6", "client-7", "client-8", "client-9", "held"],
            devices.Select(d => d.ClientId).Order(StringComparer.Ordinal));
        var after = registry.RegistrationStatistics;
        Assert.Equal(1, after.Fallbacks - before.Fallbacks);
    }

    /// <summary>
    /// Starts a re-registration of <c>dev-held</c> while a transaction outside the store holds that row, waits until the
    /// store's batch loop took it (it waits for the lock), queues <paramref name="queue"/>'s registrations, releases the
    /// lock: the queued ones run in the next batch, together.
    /// </summary>
    private static async Task<(RegisterDeviceOutcome First, RegisterDeviceOutcome[] Queued)> BehindAHeldBatchAsync(
        PostgresRegistry registry, string database, Func<Task<RegisterDeviceOutcome>[]> queue, bool expectFailures = false)
    {
        await using var holder = new NpgsqlConnection(database);
        await holder.OpenAsync();
        await using var hold = await holder.BeginTransactionAsync();
        await using (var select = new NpgsqlCommand("SELECT 1 FROM devices WHERE device_id = 'dev-held' FOR UPDATE", holder, hold))
        {
            await select.ExecuteScalarAsync();
        }

        var first = registry.RegisterDeviceAsync(Command("held", "unused") with { DeviceId = "dev-held" });
        await WaitForLockWaitAsync(database);
        var queued = queue();
        await Eventually.ReturnsAsync(() => Task.FromResult(registry.QueuedRegistrations), q => q == queued.Length, Patience, $"{queued.Length} registrations queued");
        await hold.CommitAsync();

        var firstOutcome = await first.WaitAsync(Patience);
        if (expectFailures)
        {
            var failed = await Assert.ThrowsAsync<PostgresException>(() => queued[4].WaitAsync(Patience));
            Assert.Equal(PostgresErrorCodes.CharacterNotInRepertoire, failed.SqlState);
            foreach (var (task, i) in queued.Select((t, i) => (t, i)).Where(x => x.i != 4))
            {
                Assert.Equal(RegisterDeviceResult.Created, (await task.WaitAsync(Patience)).Result);
            }

            return (firstOutcome, []);
        }

        return (firstOutcome, await Task.WhenAll(queued).WaitAsync(Patience));
    }

    /// <summary>Waits until some session of <paramref name="database"/> waits for a row lock (the store's held batch).</summary>
    private static async Task WaitForLockWaitAsync(string database)
    {
        await using var watcher = new NpgsqlConnection(database);
        await watcher.OpenAsync();
        await Eventually.ReturnsAsync(
            async () =>
            {
                await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'", watcher);
                return (long)(await command.ExecuteScalarAsync())!;
            },
            waiting => waiting > 0,
            Patience,
            "the store's batch waiting for the held row");
    }

    private static RegisterDeviceCommand Command(string clientId, string newDeviceId) =>
        new() { OrgId = "acme", ClientId = clientId, NewDeviceId = newDeviceId, Now = Now };

    private static RegistrationTokenRecord Token(string tokenId, string deviceId) =>
        new() { TokenId = tokenId, DeviceId = deviceId, IssuedAt = Now, ExpiresAt = Now.AddDays(1) };
}
