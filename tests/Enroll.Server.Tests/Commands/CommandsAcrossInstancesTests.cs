using System.Net;
using System.Text;
using System.Text.Json;
using Enroll.Protocol.Messages;
using Enroll.Server.Registry;
using Enroll.Server.Tests.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Commands;

/// <summary>Two instances on one PostgreSQL registry: a command sent on one is answered through the other.</summary>
[Collection(PostgresGroup.Name)]
public sealed class CommandsAcrossInstancesTests(PostgresServer postgres, ITestOutputHelper output)
{
    [Fact]
    public async Task AWaitOnInstanceA_ReturnsTheResult_ThatArrivedAtInstanceB()
    {
        var database = await postgres.CreateDatabaseAsync("commands");
        await using var a = await TestServer.StartAsync(output, o => o.Database = database);
        await using var b = await TestServer.StartAsync(output, o => o.Database = database);
        await ((PostgresRegistryChanges)a.Host.Services.GetRequiredService<IRegistryChanges>()).Listening;

        // A's waiters re-read only after the wait: the answer within it can come only from B's notification.
        a.Host.Services.GetRequiredService<Enroll.Server.Commands.CommandWaiters>().Recheck = TimeSpan.FromMinutes(5);
        using var states = new TempDirectory();
        var identity = await CommandDevice.RegisterAsync(b, states, "cmd-two", output);
        await using var device = await CommandDevice.ConnectAsync(b.MqttEndpoint, "cmd-two", identity);

        // A's broker has no session of the device, so A leaves the command queued; B delivers it on commands/pending.
        var sending = a.Http.PostAsync(
            $"/api/devices/{identity.DeviceId}/commands?wait=60s",
            new StringContent("""{"name":"ping","payload":{"n":1}}""", Encoding.UTF8, "application/json"));
        var commandId = await Eventually.ReturnsAsync(
            async () => (await a.Host.Services.GetRequiredService<ICommandStore>().ListCommandsAsync(identity.DeviceId, null, 10)).SingleOrDefault()?.CommandId,
            id => id is not null,
            TimeSpan.FromSeconds(30),
            "the command stored");
        Assert.Equal(1, (await device.RequestAsync("commands/pending", "{}")).GetProperty("delivered").GetInt32());
        Assert.Equal(commandId, (await device.NextCommandAsync()).GetProperty("command_id").GetString());
        await device.AnswerAsync(commandId!, CommandStatuses.Succeeded, """{"pong":1}""");
        using var response = await sending;
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(CommandStatuses.Succeeded, body.GetProperty("state").GetString());
        Assert.Equal(1, body.GetProperty("result").GetProperty("pong").GetInt32());
    }
}
