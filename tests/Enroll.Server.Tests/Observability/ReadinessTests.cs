using System.Net;
using System.Text.Json;
using Enroll.Protocol.Access;
using Enroll.Server.Tests.Registry;
using Enroll.Testing;
using Npgsql;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Observability;

/// <summary>
/// <c>/readyz</c> against real dependencies that go away: it answers 503 naming what is not ready while the PostgreSQL
/// registry refuses connections or the external broker is down, and 200 again once the registry is back.
/// </summary>
[Collection(PostgresGroup.Name)]
public sealed class ReadinessTests(PostgresServer postgres, ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static async Task<(HttpStatusCode Status, JsonElement Body)> ReadyzAsync(TestServer server)
    {
        using var anonymous = new HttpClient { BaseAddress = server.HttpEndpoint };
        using var response = await anonymous.GetAsync(new Uri("/readyz", UriKind.Relative));
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return (response.StatusCode, json.RootElement.Clone());
    }

    private static bool NotReady(JsonElement body, string check) =>
        body.GetProperty("not_ready").EnumerateArray().Any(e => e.GetString() == check);

    [Fact]
    public async Task Readyz_Is503_WhileThePostgresRegistryIsUnreachable_And200WhenItIsBack()
    {
        var database = await postgres.CreateDatabaseAsync("readyz");
        var name = new NpgsqlConnectionStringBuilder(database).Database!;
        await using var server = await TestServer.StartAsync(output, o => o.Database = database);
        Assert.Equal(HttpStatusCode.OK, (await ReadyzAsync(server)).Status);

        // The database refuses new connections, and the ones the server holds are ended: from the server's side, the
        // registry is unreachable.
        await ExecuteAsync($"ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false");
        await ExecuteAsync($"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
        try
        {
            var (status, body) = await Eventually.ReturnsAsync(() => ReadyzAsync(server), r => r.Status == HttpStatusCode.ServiceUnavailable, Patience, "/readyz says 503");
            output.WriteLine(body.ToString());
            Assert.Equal("not_ready", body.GetProperty("status").GetString());
            Assert.True(NotReady(body, "registry"), body.ToString());
            Assert.False(body.GetProperty("checks").GetProperty("registry").GetProperty("ready").GetBoolean());
            Assert.False(string.IsNullOrEmpty(body.GetProperty("checks").GetProperty("registry").GetProperty("reason").GetString()));
            Assert.False(NotReady(body, "broker"), body.ToString());
        }
        finally
        {
            await ExecuteAsync($"ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true");
        }

        await Eventually.ReturnsAsync(() => ReadyzAsync(server), r => r.Status == HttpStatusCode.OK, Patience, "/readyz says 200 again");
    }

    [Fact]
    public async Task Readyz_Is503_WhenTheExternalBrokerIsDown()
    {
        var mosquitto = await MosquittoBroker.StartAsync(acl: MosquittoAcl.Render());
        var brokerRunning = true;
        try
        {
            await using var server = await TestServer.StartAsync(output, o =>
            {
                o.ExternalBroker = mosquitto.Endpoint;
                o.BrokerPassword = "unchecked-here";
                o.BrokerClientId = "readyz-instance";
            });
            await Eventually.ReturnsAsync(() => ReadyzAsync(server), r => r.Status == HttpStatusCode.OK, Patience, "/readyz says 200 with the broker up");

            await mosquitto.DisposeAsync();
            brokerRunning = false;
            var (_, body) = await Eventually.ReturnsAsync(() => ReadyzAsync(server), r => r.Status == HttpStatusCode.ServiceUnavailable, Patience, "/readyz says 503 with the broker down");
            output.WriteLine(body.ToString());

            Assert.True(NotReady(body, "broker"), body.ToString());
            Assert.Contains("external broker", body.GetProperty("checks").GetProperty("broker").GetProperty("reason").GetString(), StringComparison.Ordinal);
            Assert.False(NotReady(body, "registry"), body.ToString());
        }
        finally
        {
            if (brokerRunning)
            {
                await mosquitto.DisposeAsync();
            }
        }
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(postgres.ConnectionString());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
