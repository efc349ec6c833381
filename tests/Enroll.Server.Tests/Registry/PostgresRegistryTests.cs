using System.Text.Json;
using Enroll.Protocol.Topics;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Registry;

/// <summary>
/// What the PostgreSQL store adds to the contract: migrations that several instances may run at once, a schema newer
/// than the server refused, races between instances decided by the database, and a whole server on it.
/// </summary>
[Collection(PostgresGroup.Name)]
public sealed class PostgresRegistryTests(PostgresServer postgres, ITestOutputHelper output)
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task EightInstancesMigratingAnEmptyDatabaseAtOnce_AllStart_AndEachMigrationRanOnce()
    {
        var database = await postgres.CreateDatabaseAsync("migrate");

        var registries = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => new PostgresRegistry(database))));

        Assert.Equal(Enumerable.Range(1, PostgresMigrations.Latest), await SchemaVersionsAsync(database));
        Assert.Equal(0, await registries[0].CountDevicesAsync());
        foreach (var registry in registries)
        {
            await registry.DisposeAsync();
        }
    }

    [Fact]
    public async Task StartingAgainOnAMigratedDatabase_ChangesNothing()
    {
        var database = await postgres.CreateDatabaseAsync("migrate");
        await using (var first = new PostgresRegistry(database))
        {
            await first.CreateProvisioningTokenAsync(new ProvisioningTokenRecord { Id = "pt-1", SecretHash = [1], OrgId = "acme", CreatedAt = Now });
        }

        await using var second = new PostgresRegistry(database);

        Assert.Equal(Enumerable.Range(1, PostgresMigrations.Latest), await SchemaVersionsAsync(database));
        Assert.NotNull(await second.FindProvisioningTokenAsync("pt-1"));
    }

    [Fact]
    public async Task ADatabaseMigratedByANewerServer_IsRefused_NamingBothVersions()
    {
        var database = await postgres.CreateDatabaseAsync("migrate");
        await new PostgresRegistry(database).DisposeAsync();
        await ExecuteAsync(database, $"INSERT INTO enroll_schema_version (version) VALUES ({PostgresMigrations.Latest + 1})");

        var refused = Assert.Throws<ServerStartException>(() => new PostgresRegistry(database));

        Assert.Equal(ServerStartProblem.DatabaseSchemaTooNew, refused.Problem);
        Assert.Contains($"schema version {PostgresMigrations.Latest + 1}", refused.Message, StringComparison.Ordinal);
        Assert.Contains($"(version {PostgresMigrations.Latest})", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TwoInstancesRegisteringOneClientAtOnce_EndWithOneDevice()
    {
        var database = await postgres.CreateDatabaseAsync("race");
        await using var a = new PostgresRegistry(database);
        await using var b = new PostgresRegistry(database);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).RegisterDeviceAsync(new RegisterDeviceCommand
        {
            OrgId = "acme",
            ClientId = "racer",
            NewDeviceId = $"dev-{i}",
            Now = Now,
        }))));

        Assert.Single(outcomes, o => o.Result == RegisterDeviceResult.Created);
        Assert.All(outcomes, o => Assert.Contains(o.Result, new[] { RegisterDeviceResult.Created, RegisterDeviceResult.Updated }));
        Assert.Single(outcomes.Select(o => o.Device!.DeviceId).Distinct());
        Assert.Equal(1, await a.CountDevicesAsync());
    }

    [Fact]
    public async Task TwoInstancesSpendingAFiveUseToken_CreateExactlyFiveDevices()
    {
        var database = await postgres.CreateDatabaseAsync("race");
        await using var a = new PostgresRegistry(database);
        await using var b = new PostgresRegistry(database);
        await a.CreateProvisioningTokenAsync(new ProvisioningTokenRecord { Id = "pt-5", SecretHash = [5], OrgId = "acme", MaxUses = 5, CreatedAt = Now });

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 30).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).RegisterDeviceAsync(new RegisterDeviceCommand
        {
            OrgId = "acme",
            ClientId = $"client-{i}",
            NewDeviceId = $"dev-{i}",
            ProvisioningTokenId = "pt-5",
            Now = Now,
        }))));

        Assert.Equal(5, outcomes.Count(o => o.Result == RegisterDeviceResult.Created));
        Assert.Equal(25, outcomes.Count(o => o.Result == RegisterDeviceResult.TokenUsedUp));
        Assert.Equal(5, (await b.FindProvisioningTokenAsync("pt-5"))!.Uses);
        Assert.Equal(5, await b.CountDevicesAsync());
    }

    [Fact]
    public async Task ARefreshedAwayTokenUsedThroughBothInstancesAtOnce_GetsOneGraceUse_AndTheOtherIsReuse()
    {
        var database = await postgres.CreateDatabaseAsync("race");
        await using var a = new PostgresRegistry(database);
        await using var b = new PostgresRegistry(database);
        await a.RegisterDeviceAsync(new RegisterDeviceCommand { OrgId = "acme", ClientId = "c", NewDeviceId = "dev-1", Now = Now });
        var old = new RegistrationTokenRecord { TokenId = "jti-old", DeviceId = "dev-1", IssuedAt = Now, ExpiresAt = Now.AddDays(1) };
        await a.RecordRegistrationTokenAsync(old);
        await a.ReplaceRegistrationTokenAsync("jti-old", old with { TokenId = "jti-new" }, Now);

        var uses = await Task.WhenAll(Task.Run(() => a.UseRegistrationTokenAsync("jti-old", "dev-1", Now, TimeSpan.FromMinutes(1))), Task.Run(() => b.UseRegistrationTokenAsync("jti-old", "dev-1", Now, TimeSpan.FromMinutes(1))));

        Assert.Equal([RegistrationTokenUse.GraceUse, RegistrationTokenUse.Reused], uses.Order());
        Assert.NotNull((await b.FindDeviceAsync("dev-1"))!.TokensValidAfter);
    }

    [Fact]
    public async Task AddEnrollRegistry_WithADatabase_ServesEveryAggregateFromOnePostgresStore()
    {
        var database = await postgres.CreateDatabaseAsync("services");
        using var folder = new TempDirectory("enroll-registry-services");

        await using (var provider = new ServiceCollection().AddEnrollRegistry(new EnrollServerOptions { Database = database }, folder.Path).BuildServiceProvider())
        {
            var registry = Assert.IsType<PostgresRegistry>(provider.GetRequiredService<IRegistry>());
            Assert.Same(registry, provider.GetRequiredService<IDeviceStore>());
            Assert.Same(registry, provider.GetRequiredService<IProvisioningTokenStore>());
            Assert.Same(registry, provider.GetRequiredService<IOperationStore>());
            Assert.Same(registry, provider.GetRequiredService<IMessageStore>());
        }

        Assert.False(File.Exists(folder.Combine(SqliteRegistry.FileName)));
    }

    [Fact]
    public async Task AServerWithADatabase_RegistersADeviceEndToEnd_IntoPostgreSql()
    {
        var database = await postgres.CreateDatabaseAsync("server");
        await using (var server = await TestServer.StartAsync(output, o => o.Database = database))
        {
            var token = await server.CreateTokenAsync(autoApprove: true);
            await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "pg-device");
            await client.SubscribeAsync(EnrollTopics.ClientResponses("pg-device"));
            await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"pg-device","provisioning_token":"{{token.Token}}"}""", EnrollTopics.ClientResponses("pg-device"), [1]);
            using var answer = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(TimeSpan.FromSeconds(30))));

            Assert.False(answer.RootElement.TryGetProperty("error", out _), answer.RootElement.GetRawText());
            var deviceId = answer.RootElement.GetProperty("device_id").GetString();
            Assert.Equal([deviceId], (await server.ListDevicesAsync()).Select(d => d.DeviceId));
            Assert.False(File.Exists(Path.Combine(server.DataDirectory, SqliteRegistry.FileName)), "the SQLite registry is not used");
        }

        // The device is in the database, not in the server's data folder.
        await using var registry = new PostgresRegistry(database);
        var device = Assert.Single(await registry.ListDevicesAsync(null, 10));
        Assert.Equal("pg-device", device.ClientId);
    }

    [Fact]
    public async Task AServerGivenADatabaseStringWithAPassword_RefusesToStart_PointingAtTheEnvironmentVariable()
    {
        var database = new NpgsqlConnectionStringBuilder(postgres.ConnectionString()) { Password = "secret" }.ConnectionString;

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, o => o.Database = database));

        Assert.Equal(ServerStartProblem.InvalidOptions, refused.Problem);
        Assert.Contains("ENROLL_DATABASE_PASSWORD", refused.Message, StringComparison.Ordinal);
    }

    private static async Task<List<int>> SchemaVersionsAsync(string database)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT version FROM enroll_schema_version ORDER BY version", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var versions = new List<int>();
        while (await reader.ReadAsync())
        {
            versions.Add(reader.GetInt32(0));
        }

        return versions;
    }

    private static async Task ExecuteAsync(string database, string sql)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
