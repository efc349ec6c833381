using Enroll.Reliability.Tests.Harness;
using Enroll.Testing;
using Microsoft.Data.Sqlite;
using MQTTnet.Protocol;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.FaultMatrix;

/// <summary>Direct edits of a stopped device's outbox.db, as the issue reproduced them with sqlite3.</summary>
internal static class OutboxFile
{
    public static SqliteConnection Open(string statePath)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path.Combine(statePath, "outbox.db"), Pooling = false, DefaultTimeout = 5 }.ToString());
        connection.Open();
        return connection;
    }

    public static int Execute(string statePath, string sql)
    {
        using var connection = Open(statePath);
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }

    public static long Scalar(string statePath, string sql)
    {
        using var connection = Open(statePath);
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    public static bool IsQuarantined(string statePath, string messageId) =>
        Scalar(statePath, $"SELECT COUNT(*) FROM quarantine WHERE message_id = '{messageId}'") > 0;

    public static Func<int> DataPublishes(RequestCounter counter, string deviceId) =>
        () => counter[Enroll.Protocol.Topics.EnrollTopics.DeviceMessages(deviceId, "matrix")];
}

/// <summary>Server refusing a message: one row says content_encoding gzip but holds a plain payload (PUBACK 0x99).</summary>
public sealed class PoisonRowTests(ITestOutputHelper output)
{
    [Fact]
    public async Task PoisonRow_IsQuarantinedNotResentForever_NamesMessageRefused_AndTheRowsBehindItAreDelivered()
    {
        await using var server = await TestServer.StartAsync();
        var counter = server.CountRequests();
        await using var run = new FaultRun("poison_row", output);
        var deviceId = await run.RegisterAsync(server.MqttEndpoint, (await server.CreateTokenAsync()).Token!);
        await run.SendAsync(server.MqttEndpoint, 3);
        var poisoned = run.Acknowledged[0];
        Assert.Equal(1, OutboxFile.Execute(run.StatePath, $"UPDATE messages SET content_encoding = 'gzip' WHERE message_id = '{poisoned}'"));

        var agent = await run.StartAgentAsync(server.MqttEndpoint);
        var measured = await run.MeasureAsync(agent, OutboxFile.DataPublishes(counter, deviceId));
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(10), [poisoned]);
        await agent.StopAsync();
        var quarantined = OutboxFile.IsQuarantined(run.StatePath, poisoned);
        output.WriteLine($"poisoned row {poisoned} quarantined: {quarantined}");

        // The poisoned row is accounted for in quarantine, with its reason; only a row neither stored nor quarantined is lost.
        run.Report(measured, FaultRun.CeilingPerLoop, lost + (quarantined ? 0 : 1), "publishes", "message_refused");
    }
}

/// <summary>Server answering PUBACK 0x80 (unspecified error: its disk is full) to every data message.</summary>
public sealed class PubAck80Tests(ITestOutputHelper output)
{
    [Fact]
    public async Task PubAck0x80_AgentBacksOffItsResends_NamesServerBusy_AndDeliversOnceTheServerStoresAgain()
    {
        await using var server = await TestServer.StartAsync();
        await using var busy = await StandInBroker.StartAsync();
        busy.RefuseDataWith = MqttPubAckReasonCode.UnspecifiedError;
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        await using var run = new FaultRun("puback_0x80", output);
        await run.RegisterAsync(proxy.Endpoint, (await server.CreateTokenAsync()).Token!);
        await run.SendAsync(proxy.Endpoint, 3);
        proxy.ForwardTo(busy.Endpoint);

        var agent = await run.StartAgentAsync(proxy.Endpoint);
        var measured = await run.MeasureAsync(agent, () => busy.Publishes(t => t.Contains("/messages/", StringComparison.Ordinal)));
        proxy.ForwardTo(server.MqttEndpoint);
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(15));

        // Each resend round may publish the three waiting messages; rounds are one backoff step apart.
        run.Report(measured, 3 * FaultRun.CeilingPerLoop, lost, "publishes", "server_busy");
    }
}

/// <summary>
/// Oversize message: the broker takes packets up to 64 KiB here. One row above that sits between two small ones (stored
/// before the limit was known, or by an older version); a new send of one is refused at SendAsync after the fix.
/// </summary>
public sealed class OversizeMessageTests(ITestOutputHelper output)
{
    [Fact]
    public async Task OversizeMessage_DoesNotBlockTheOutbox_NamesMessageTooLarge_AndTheSmallOnesAreDelivered()
    {
        await using var server = await TestServer.StartAsync(configure: o => o.MaxPacketBytes = 64 * 1024);
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        var counter = server.CountRequests();
        await using var run = new FaultRun("oversize_message", output);
        var deviceId = await run.RegisterAsync(proxy.Endpoint, (await server.CreateTokenAsync()).Token!);
        await run.SendAsync(proxy.Endpoint, 1);
        // A well-formed row in every way but its size: the first row's message ID with its last character changed.
        Assert.Equal(1, OutboxFile.Execute(run.StatePath, """
            INSERT INTO messages (message_id, device_id, stream, created_at, content_type, content_encoding, properties, payload, size, schema_version)
            SELECT substr(message_id, 1, length(message_id) - 1) || CASE WHEN substr(message_id, -1) = '0' THEN '1' ELSE '0' END,
                   device_id, stream, created_at, 'application/octet-stream', NULL, properties, randomblob(200000), 200000, schema_version
            FROM messages ORDER BY seq LIMIT 1
            """));
        var big = ReadBigId(run.StatePath);
        await run.SendAsync(proxy.Endpoint, 1);

        // A new send of a message no broker packet can carry: refused with a clear error (exit code, one line) after the fix.
        var hugeFile = Path.Combine(Path.GetTempPath(), $"enroll-huge-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(hugeFile, $"\"{Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(1_200_000))}\"");
        var huge = await run.SendAsync(proxy.Endpoint, 1, $"@{hugeFile}");
        File.Delete(hugeFile);
        output.WriteLine($"send of a 1.6 MB message: exit {huge.ExitCode}: {huge.StandardError.Trim()}");
        var hugeAccepted = huge.ExitCode == 0 ? run.Acknowledged[^1] : null;

        var agent = await run.StartAgentAsync(proxy.Endpoint);
        var measured = await run.MeasureAsync(agent, () => proxy.Connections);
        var excused = hugeAccepted is null ? new[] { big } : [big, hugeAccepted];
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(10), excused);
        await agent.StopAsync();
        var unaccounted = excused.Count(id => !OutboxFile.IsQuarantined(run.StatePath, id));
        output.WriteLine($"data publishes at the server: {OutboxFile.DataPublishes(counter, deviceId)()}; oversize rows not quarantined: {unaccounted}");

        run.Report(measured, 2 * FaultRun.CeilingPerLoop, lost + unaccounted, "connects", "message_too_large");
    }

    private static string ReadBigId(string statePath)
    {
        using var connection = OutboxFile.Open(statePath);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT message_id FROM messages WHERE size = 200000";
        return (string)command.ExecuteScalar()!;
    }
}

/// <summary>
/// Outbox locked: another process holds a write transaction (BEGIN IMMEDIATE) on outbox.db while the agent publishes,
/// longer than SQLite's 30 s busy timeout. Afterwards the agent must still deliver (issue 10 #5: it died silently).
/// </summary>
public sealed class OutboxLockedTests(ITestOutputHelper output)
{
    [Fact]
    public async Task OutboxLocked_PublisherSurvivesAndSaysSo_NamesStorageLocked_AndDeliversAfterTheLockIsReleased()
    {
        await using var server = await TestServer.StartAsync();
        await using var proxy = FaultProxy.Refusing();
        var counter = server.CountRequests();
        await using var run = new FaultRun("outbox_locked", output);
        proxy.ForwardTo(server.MqttEndpoint);
        var deviceId = await run.RegisterAsync(proxy.Endpoint, (await server.CreateTokenAsync()).Token!);
        proxy.Refuse();
        await run.SendAsync(proxy.Endpoint, 3);
        var agent = await run.StartAgentAsync(proxy.Endpoint);

        Measurement measured;
        using (var holder = OutboxFile.Open(run.StatePath))
        {
            using (var begin = holder.CreateCommand())
            {
                begin.CommandText = "BEGIN IMMEDIATE";
                begin.ExecuteNonQuery();
            }

            // Now the broker is back: the publisher sends, the broker acknowledges, and deleting the rows meets the lock.
            proxy.ForwardTo(server.MqttEndpoint);
            var stopWhenNamed = () => AgentHealth.ReadFile(run.StatePath).Any(f => f.Kind is "storage_locked");
            measured = await run.MeasureAsync(agent, OutboxFile.DataPublishes(counter, deviceId), TimeSpan.FromSeconds(32), stopWhenNamed);
            using var rollback = holder.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
        }

        // Released: a message sent now must be delivered too (the publisher is alive), and the three before it were kept.
        await run.SendAsync(proxy.Endpoint, 1);
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(15));
        run.Report(measured, 3 * FaultRun.CeilingPerLoop, lost, "publishes", "storage_locked");
    }
}
