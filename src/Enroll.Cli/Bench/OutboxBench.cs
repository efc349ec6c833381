using System.Diagnostics;
using System.Text;
using Enroll.Device;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Cli.Bench;

/// <summary>
/// <c>enroll bench outbox</c> and <c>enroll bench ingest</c> (SPEC §7): raw SQLite against the outbox on the same disk,
/// and outbox drain / server ingest against a raw QoS 1 publish loop on the same broker.
/// </summary>
internal static class OutboxBench
{
    /// <summary>A 200-byte telemetry-like payload.</summary>
    private static readonly byte[] Payload = Encoding.UTF8.GetBytes("{\"temperature\":21.53,\"humidity\":40.2,\"pressure\":1013.25,\"battery\":3.71,\"rssi\":-67,\"status\":\"ok\",\"firmware\":\"1.4.2\",\"uptime\":123456,\"note\":\"" + new string('x', 52) + "\"}");

    public static async Task<BenchReport> RunOutboxAsync(string directory, TimeSpan duration, int runs, int drainCount, int window, Action<string> progress)
    {
        var report = new BenchReport("outbox");
        var rawSingle = new List<double>();
        var rawBatched = new List<double>();
        var oneSender = new List<double>();
        var manySenders = new List<double>();
        var drain = new List<double>();
        var rawPublish = new List<double>();

        // Each run drains before its raw loop: uncounted, the first drain would pay alone for compiling the MQTT paths both use.
        progress($"warm-up: a drain of {drainCount} messages and a raw QoS 1 publish loop, not counted");
        await using (var warm = await BenchEnvironment.EmbeddedAsync(directory))
        {
            await DrainAsync(warm, "drain-warmup", drainCount, window);
        }

        report.Note($"Before the runs, one drain of {drainCount} messages and one raw publish loop warm up the process; they are not counted.");
        for (var run = 1; run <= runs; run++)
        {
            progress($"run {run}/{runs}: raw SQLite, one row per transaction");
            rawSingle.Add(RawInsert(directory, duration, batch: 1));
            progress($"run {run}/{runs}: raw SQLite, batches of {window}");
            rawBatched.Add(RawInsert(directory, duration, batch: window));
            await using var environment = await BenchEnvironment.EmbeddedAsync(directory);
            progress($"run {run}/{runs}: outbox, 1 sender");
            oneSender.Add(await OutboxSendersAsync(environment, $"one-{run}", 1, duration));
            progress($"run {run}/{runs}: outbox, 64 senders");
            manySenders.Add(await OutboxSendersAsync(environment, $"many-{run}", 64, duration));
            progress($"run {run}/{runs}: drain {drainCount} messages, and a raw QoS 1 publish loop");
            var (drainRate, raw) = await DrainAsync(environment, $"drain-{run}", drainCount, window);
            drain.Add(drainRate);
            rawPublish.Add(raw);
        }

        var single = report.Add("raw SQLite insert, 1 row/transaction (WAL, FULL)", "rows/s", rawSingle);
        var batched = report.Add($"raw SQLite insert, {window} rows/transaction (WAL, FULL)", "rows/s", rawBatched);
        var one = report.Add("outbox SendAsync, 1 sender (durable)", "sends/s", oneSender);
        var many = report.Add("outbox SendAsync, 64 senders (durable)", "sends/s", manySenders);
        var drained = report.Add($"outbox drain to the embedded broker, stored by the server (window {window})", "messages/s", drain);
        var publish = report.Add($"raw QoS 1 publish loop, same broker (window {window})", "messages/s", rawPublish);
        report.Ratio("outbox 1 sender / raw 1 row per transaction", one, single, 0.9);
        report.Ratio("outbox 64 senders / raw batched", many, batched, 0.5);
        report.Ratio("outbox drain + ingest / raw QoS 1 publish", drained, publish, 0.5);
        return report;
    }

    public static async Task<BenchReport> RunIngestAsync(string directory, int count, int runs, int window, Action<string> progress)
    {
        var report = new BenchReport("ingest");
        var ingest = new List<double>();
        var raw = new List<double>();
        for (var run = 1; run <= runs; run++)
        {
            await using var environment = await BenchEnvironment.EmbeddedAsync(directory);
            var (client, deviceId) = await ConnectedDeviceAsync(environment, $"ingest-{run}");
            using (client)
            {
                progress($"run {run}/{runs}: raw QoS 1 publish loop");
                raw.Add(await PublishLoopAsync(client, count, window, i => $"enroll/v1/devices/{deviceId}/bench", null));
                progress($"run {run}/{runs}: {count} messages into server ingest");
                ingest.Add(await PublishLoopAsync(client, count, window, _ => $"enroll/v1/devices/{deviceId}/messages/telemetry", i => $"{run:00}{i:000000000000000000000000}"));
            }
        }

        var stored = report.Add($"server ingest: QoS 1 publishes stored and acknowledged (window {window})", "messages/s", ingest);
        var publish = report.Add($"raw QoS 1 publish loop, same broker (window {window})", "messages/s", raw);
        report.Ratio("server ingest / raw QoS 1 publish", stored, publish, 0.5);
        return report;
    }

    private static double RawInsert(string directory, TimeSpan duration, int batch)
    {
        var path = Path.Combine(directory, $"enroll-bench-raw-{Guid.NewGuid():N}.db");
        try
        {
            using var connection = new SqliteConnection($"Data Source={path};Pooling=false");
            connection.Open();
            using (var setup = connection.CreateCommand())
            {
                setup.CommandText = """
                    PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                    CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, stream TEXT NOT NULL, created_at INTEGER NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL);
                    """;
                setup.ExecuteNonQuery();
            }

            using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO messages (message_id, stream, created_at, payload, size) VALUES ($id, 'telemetry', $created, $payload, $size)";
            var id = insert.Parameters.Add("$id", SqliteType.Text);
            var created = insert.Parameters.Add("$created", SqliteType.Integer);
            insert.Parameters.AddWithValue("$payload", Payload);
            insert.Parameters.AddWithValue("$size", Payload.Length);
            var rows = 0L;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < duration)
            {
                using var transaction = connection.BeginTransaction();
                insert.Transaction = transaction;
                for (var i = 0; i < batch; i++)
                {
                    id.Value = rows.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    created.Value = rows;
                    insert.ExecuteNonQuery();
                    rows++;
                }

                transaction.Commit();
            }

            return rows / clock.Elapsed.TotalSeconds;
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            foreach (var file in new[] { path, path + "-wal", path + "-shm" })
            {
                File.Delete(file);
            }
        }
    }

    private static async Task<double> OutboxSendersAsync(BenchEnvironment environment, string clientId, int senders, TimeSpan duration)
    {
        await using var device = environment.Device(clientId, token: null, o =>
        {
            o.OutboxMaxMessages = 100_000_000;
            o.OutboxMaxBytes = 64L * 1024 * 1024 * 1024;
        });
        var outbox = device.GetRequiredService<DeviceOutbox>();
        await outbox.SendAsync("telemetry", Payload);
        var sent = 0L;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, senders).Select(_ => Task.Run(async () =>
        {
            while (clock.Elapsed < duration)
            {
                await outbox.SendAsync("telemetry", Payload);
                Interlocked.Increment(ref sent);
            }
        })));
        return sent / clock.Elapsed.TotalSeconds;
    }

    private static async Task<(double Drain, double RawPublish)> DrainAsync(BenchEnvironment environment, string clientId, int count, int window)
    {
        var token = await environment.CreateTokenAsync();
        await using var device = environment.Device(clientId, token, o =>
        {
            o.PublishWindow = window;

            // Room for every message of the drain, however many were asked for.
            o.OutboxMaxMessages = Math.Max(o.OutboxMaxMessages, count);
            o.OutboxMaxBytes = Math.Max(o.OutboxMaxBytes, 2L * count * Payload.Length);
        });
        var registration = device.GetRequiredService<RegistrationService>();
        await registration.StartAsync();
        var outbox = device.GetRequiredService<DeviceOutbox>();
        await Task.WhenAll(Enumerable.Range(0, 64).Select(s => Task.Run(async () =>
        {
            for (var i = s; i < count; i += 64)
            {
                await outbox.SendAsync("telemetry", Payload);
            }
        })));

        var publisher = device.GetRequiredService<OutboxPublisher>();
        var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        publisher.Drained += () => drained.TrySetResult();
        var clock = Stopwatch.StartNew();
        await publisher.StartAsync(CancellationToken.None);
        await drained.Task.WaitAsync(TimeSpan.FromMinutes(10));
        var drainRate = count / clock.Elapsed.TotalSeconds;
        await publisher.StopAsync(CancellationToken.None);
        await registration.StopAsync();

        // The raw loop publishes as the same device, with the same window, to a topic of its own the server does not ingest.
        var (client, deviceId) = await ConnectedDeviceAsync(environment, clientId + "-raw");
        using (client)
        {
            var raw = await PublishLoopAsync(client, count, window, _ => $"enroll/v1/devices/{deviceId}/bench", null);
            return (drainRate, raw);
        }
    }

    /// <summary>Registers a device through the real path and connects a plain MQTTnet client as it.</summary>
    internal static async Task<(IMqttClient Client, string DeviceId)> ConnectedDeviceAsync(BenchEnvironment environment, string clientId)
    {
        var token = await environment.CreateTokenAsync();
        await using var device = environment.Device(clientId, token);
        var registration = device.GetRequiredService<RegistrationService>();
        var identity = await registration.StartAsync();
        await registration.StopAsync();
        var credentials = await device.GetRequiredService<ICredentialStore>().LoadAsync();
        await device.DisposeAsync();
        var client = new MqttClientFactory().CreateMqttClient();
        await client.ConnectAsync(new MqttClientOptionsBuilder()
            .WithTcpServer(environment.Mqtt.Host, environment.Mqtt.Port)
            .WithClientId(clientId)
            .WithCredentials(identity.DeviceId, credentials!.AccessToken)
            .Build());
        return (client, identity.DeviceId);
    }

    private static async Task<double> PublishLoopAsync(IMqttClient client, int count, int windowSize, Func<int, string> topic, Func<int, string>? messageId)
    {
        using var window = new SemaphoreSlim(windowSize);
        var failures = 0;
        var clock = Stopwatch.StartNew();
        var tasks = new List<Task>(count);
        for (var i = 0; i < count; i++)
        {
            await window.WaitAsync();
            var builder = new MqttApplicationMessageBuilder().WithTopic(topic(i)).WithPayload(Payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce);
            if (messageId is not null)
            {
                builder.WithUserProperty("message_id", Encoding.UTF8.GetBytes(messageId(i)).AsMemory());
            }

            tasks.Add(Publish(builder.Build()));
        }

        await Task.WhenAll(tasks);
        var rate = count / clock.Elapsed.TotalSeconds;
        if (failures > 0)
        {
            throw new InvalidOperationException($"{failures} publishes were refused");
        }

        return rate;

        async Task Publish(MqttApplicationMessage message)
        {
            try
            {
                var result = await client.PublishAsync(message);
                if (!result.IsSuccess)
                {
                    Interlocked.Increment(ref failures);
                }
            }
            finally
            {
                window.Release();
            }
        }
    }
}
