using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Enroll.Protocol.Topics;
using Enroll.Protocol.Transfers;
using Enroll.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Outbox;

/// <summary>
/// The outbox publisher against a real server on its worst days: messages refused for good or for now, messages over the
/// broker's packet limit, an outbox file locked by another process, a full disk. Each test counts what went over the
/// wire in a bounded window and checks the fault the device reported.
/// </summary>
public sealed class PublisherFaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly RecordingOutput _log = new(output);

    private async Task<(DeviceHarness Device, string DeviceId, FaultRecorder Faults)> RegisteredDeviceAsync(TestServer server, string statePath, string clientId, Action<EnrollDeviceOptions>? configure = null)
    {
        var token = await server.CreateTokenAsync();
        var device = DeviceHarness.Create(server.MqttEndpoint, clientId, statePath, token.Token, _log, o =>
        {
            o.MaxAttempts = 50;
            configure?.Invoke(o);
        });
        var identity = await device.Registration.StartAsync();
        return (device, identity.DeviceId, new FaultRecorder(device.Services.GetRequiredService<DeviceHealth>()));
    }

    private static int N(Enroll.Server.IngestedMessage message)
    {
        using var json = JsonDocument.Parse(message.Payload);
        return json.RootElement.GetProperty("n").GetInt32();
    }

    private static byte[] Json(int n) => Encoding.UTF8.GetBytes($"{{\"n\":{n}}}");

    private static SqliteConnection OpenOutbox(string statePath)
    {
        var connection = new SqliteConnection($"Data Source={Path.Combine(statePath, "outbox.db")};Pooling=false");
        connection.Open();
        return connection;
    }

    private static List<string> QuarantineReasons(string statePath)
    {
        using var connection = OpenOutbox(statePath);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT reason FROM quarantine ORDER BY seq";
        using var reader = command.ExecuteReader();
        var reasons = new List<string>();
        while (reader.Read())
        {
            reasons.Add(reader.GetString(0));
        }

        return reasons;
    }

    [Fact]
    public async Task PermanentRefusal_PubAck0x99_QuarantinesTheRowWithTheReason_ReportsMessageRefused_AndDeliversTheRowsBehindIt()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId, faults) = await RegisteredDeviceAsync(server, state.Path, "refused-1");
        await using var _ = device;
        await device.Outbox.SendAsync("s", Json(0));
        var poison = await device.Outbox.SendAsync("s", Json(1));
        await device.Outbox.SendAsync("s", Json(2));
        using (var connection = OpenOutbox(state.Path))
        {
            // The issue's reproduction: a plain payload that claims to be gzip. The server answers PUBACK 0x99.
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE messages SET content_encoding = 'gzip' WHERE message_id = $id";
            command.Parameters.AddWithValue("$id", poison);
            Assert.Equal(1, command.ExecuteNonQuery());
        }

        var published = server.CountRequests();
        var topic = EnrollTopics.DeviceMessages(deviceId, "s");
        var started = Stopwatch.StartNew();
        await device.StartAgentsAsync();
        try
        {
            await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics()), s => s.Depth == 0 && s.Quarantined == 1, Patience, "the outbox drained with one row quarantined");
            await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 2, Patience, "both good messages stored");

            // A bounded window after the drain: the refused row is never sent again.
            await Task.Delay(TimeSpan.FromSeconds(2));
        }
        finally
        {
            output.WriteLine($"publishes on {topic} in {started.Elapsed.TotalSeconds:0.0} s: {published[topic]}");
        }

        Assert.Equal(3, published[topic]);
        Assert.Equal([0, 2], (await server.MessagesAsync(deviceId)).Select(N));
        var reason = Assert.Single(QuarantineReasons(state.Path));
        Assert.Contains("PayloadFormatInvalid (0x99)", reason, StringComparison.Ordinal);
        var fault = Assert.Single(faults.Seen, f => f.Kind == DeviceFaultKind.MessageRefused);
        Assert.Contains(poison, fault.Message, StringComparison.Ordinal);
        Assert.Contains(_log.Lines, l => l.Contains(poison, StringComparison.Ordinal) && l.Contains("quarantine", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TransientRefusal_PubAck0x80_IsBackedOff_ReportsServerBusy_AndClearsWhenAnAckSucceeds()
    {
        await using var server = await TestServer.StartAsync(output);
        var broker = new BrokerFaults(server);
        using var state = new TempDirectory();
        var (device, deviceId, faults) = await RegisteredDeviceAsync(server, state.Path, "busy-1");
        await using var _ = device;
        for (var i = 0; i < 20; i++)
        {
            await device.Outbox.SendAsync("s", Json(i));
        }

        // What the server answers when its disk is full: PUBACK 0x80 for every message, for a bounded window.
        broker.RefusePubAcks(0x80);
        var published = server.CountRequests();
        var topic = EnrollTopics.DeviceMessages(deviceId, "s");
        await device.StartAgentsAsync();
        var window = TimeSpan.FromSeconds(4);
        await Task.Delay(window);
        var duringRefusal = published[topic];
        broker.StopRefusing();

        // InitialBackoff 100 ms doubling to MaxBackoff 1 s, spread over [d/2, d): at most 20 (the first window) + about 11
        // probes of one message in 4 s. Without backoff it was ~1,640 publishes a second.
        output.WriteLine($"publishes on {topic} in {window.TotalSeconds} s of PUBACK 0x80: {duringRefusal}");
        Assert.InRange(duringRefusal, 20, 40);
        Assert.Contains(faults.Seen, f => f.Kind == DeviceFaultKind.ServerBusy && f.Message.Contains("0x80", StringComparison.Ordinal));
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "the outbox drained once the server accepts again");
        Assert.Equal(Enumerable.Range(0, 20), (await server.MessagesAsync(deviceId)).Select(N));
        Assert.Null(faults.Health.FaultOf(DeviceComponents.Publisher));
        Assert.Equal(0, device.Outbox.GetStatistics().Quarantined);

        // The repeated condition was logged once per distinct reason, not once per attempt.
        Assert.InRange(_log.Lines.Count(l => l.Contains("Outbox delivery paused", StringComparison.Ordinal)), 1, 2);
    }

    [Fact]
    public async Task Send_MessageOverMaxMessageBytesAfterCompression_IsRefusedWithTheLimit_AndNothingIsStored()
    {
        // Issue 14: the default limit is 16 MiB now (larger messages than a packet are chunked), no longer 1 MiB.
        using var state = new TempDirectory();
        await using var outbox = new DeviceOutbox(
            Microsoft.Extensions.Options.Options.Create(new EnrollDeviceOptions { ClientId = "c", StatePath = state.Path }),
            TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<DeviceOutbox>.Instance,
            () => "dev_1");
        var incompressible = new byte[17 * 1024 * 1024];
        new Random(7).NextBytes(incompressible);

        var refused = await Assert.ThrowsAsync<MessageTooLargeException>(() => outbox.SendAsync("s", incompressible));

        Assert.Contains("16,777,216", refused.Message, StringComparison.Ordinal);
        Assert.Contains("MaxMessageBytes", refused.Message, StringComparison.Ordinal);
        Assert.Equal(16 * 1024 * 1024, refused.Limit);
        Assert.Equal(0, outbox.GetStatistics().Depth);

        // The limit is on the stored (compressed) size: 17 MiB that compress well are fine.
        await outbox.SendAsync("s", new byte[17 * 1024 * 1024]);
        Assert.InRange(outbox.GetStatistics().Depth, 1, 2);
        Assert.InRange(outbox.GetStatistics().Bytes, 1, 1024 * 1024);
    }

    [Fact]
    public async Task StoredRowOverTheBrokersMaximumPacketSize_IsQuarantinedWithoutBeingSent_AndTheRowsBehindItAreDelivered()
    {
        const int limit = 64 * 1024;
        await using var server = await TestServer.StartAsync(output, o => o.MaxPacketBytes = limit);
        var broker = new BrokerFaults(server) { MaximumPacketSize = limit };
        using var state = new TempDirectory();
        var (device, deviceId, faults) = await RegisteredDeviceAsync(server, state.Path, "huge-1");
        await using var _ = device;
        var huge = new byte[100 * 1024];
        new Random(3).NextBytes(huge);
        await device.Outbox.SendAsync("s", Json(0));

        // Accepted: this process has not connected for data yet, so the broker's limit is not known (as for a row stored
        // by `enroll device send` in another process, or before the broker's limit was lowered).
        var tooLarge = await device.Outbox.SendAsync("s", huge);
        await device.Outbox.SendAsync("s", Json(2));
        var published = server.CountRequests();
        var topic = EnrollTopics.DeviceMessages(deviceId, "s");
        var connectsBefore = broker.Connects;
        var started = Stopwatch.StartNew();
        await device.StartAgentsAsync();
        try
        {
            await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics()), s => s.Depth == 0 && s.Quarantined == 1, Patience, "the outbox drained with the huge row quarantined");
            await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 2, Patience, "both small messages stored");
        }
        finally
        {
            output.WriteLine($"in {started.Elapsed.TotalSeconds:0.0} s: {broker.Connects - connectsBefore} connects, {published[topic]} publishes on {topic}");
        }

        Assert.Equal([0, 2], (await server.MessagesAsync(deviceId)).Select(N));
        Assert.Equal(2, published[topic]);
        Assert.InRange(broker.Connects - connectsBefore, 1, 2);
        Assert.Contains("too large for the broker's maximum packet size 65536", Assert.Single(QuarantineReasons(state.Path)), StringComparison.Ordinal);
        Assert.Contains(faults.Seen, f => f.Kind == DeviceFaultKind.MessageTooLarge && f.Message.Contains(tooLarge, StringComparison.Ordinal));

        // Issue 14: now that the broker's limit is known, a send that cannot fit one packet is no longer refused: it is
        // stored as the chunks of one transfer, each of which fits the limit, and the server stores it as one message.
        var chunked = await device.Outbox.SendAsync("s", huge);
        var transfer = device.Outbox.GetTransfer(chunked);
        Assert.NotNull(transfer);
        Assert.Equal(TransferKinds.Message, transfer.Kind);
        Assert.Equal(huge.Length, transfer.Size);
        Assert.Equal(2, transfer.ChunkCount);
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 3, Patience, "the chunked message stored");
        Assert.Equal(huge, (await server.MessagesAsync(deviceId)).Single(m => m.MessageId == chunked).Payload.ToArray());
    }

    [Fact]
    public async Task OutboxLockedByAnotherProcess_ReportsStorageLocked_LogsIt_AndDeliversEverythingOnceReleased()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId, faults) = await RegisteredDeviceAsync(server, state.Path, "locked-1");
        await using var _ = device;
        for (var i = 0; i < 10; i++)
        {
            await device.Outbox.SendAsync("s", Json(i));
        }

        using (var other = OpenOutbox(state.Path))
        {
            // Another process holds the write lock (BEGIN IMMEDIATE) while the agent publishes.
            using var hold = other.BeginTransaction(deferred: false);
            await device.StartAgentsAsync();
            await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 10, Patience, "the messages published while the file is locked");
            await Eventually.ReturnsAsync(() => Task.FromResult(faults.Health.FaultOf(DeviceComponents.Publisher)), f => f?.Kind == DeviceFaultKind.StorageLocked, Patience, "the publisher reports the lock");
            Assert.Equal(10, device.Outbox.GetStatistics().Depth);
            hold.Rollback();
        }

        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "acknowledged rows deleted once the lock is released");
        await Eventually.ReturnsAsync(() => Task.FromResult(faults.Health.FaultOf(DeviceComponents.Publisher)), f => f is null, Patience, "the fault cleared");
        Assert.Contains(_log.Lines, l => l.Contains("Outbox delivery paused (StorageLocked", StringComparison.Ordinal));

        // Still delivering: a message sent after the lock goes out.
        await device.Outbox.SendAsync("s", Json(10));
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 11, Patience, "a later message stored");
        Assert.Equal(Enumerable.Range(0, 11), (await server.MessagesAsync(deviceId)).Select(N));
    }

    [Fact]
    public async Task Send_OnAFullOutboxFile_FailsWithOutboxStorageException_AndEarlierMessagesAreDeliveredOnceSpaceReturns()
    {
        // Portable (no mount needed): the file is capped at its size, so SQLite answers SQLITE_FULL as on a full disk.
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId, _) = await RegisteredDeviceAsync(server, state.Path, "capped-1");
        await using var _ = device;
        for (var i = 0; i < 5; i++)
        {
            await device.Outbox.SendAsync("s", Json(i));
        }

        await device.Outbox.Store.CapFileSizeAsync(capped: true);
        var big = new byte[16 * 1024];
        new Random(5).NextBytes(big);
        var full = await Assert.ThrowsAsync<OutboxStorageException>(() => device.Outbox.SendAsync("s", big));
        Assert.True(full.DiskFull);
        Assert.Contains($"the disk holding the state folder {state.Path} is full", full.Message, StringComparison.Ordinal);
        Assert.Equal(5, device.Outbox.GetStatistics().Depth);

        await device.Outbox.Store.CapFileSizeAsync(capped: false);
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 5, Patience, "the earlier messages stored");
        Assert.Equal(Enumerable.Range(0, 5), (await server.MessagesAsync(deviceId)).Select(N));
    }

    [Fact]
    public async Task DiskFull_SendFailsWithAClearError_ThePublisherBacksOffOnDelete_AndEverythingIsDeliveredOnceSpaceReturns()
    {
        using var mount = TmpfsMount.Create(4 * 1024 * 1024, output);
        await using var server = await TestServer.StartAsync(output);
        var statePath = Path.Combine(mount.Path, "state");
        var (device, deviceId, faults) = await RegisteredDeviceAsync(server, statePath, "full-1");
        await using var _ = device;
        for (var i = 0; i < 10; i++)
        {
            await device.Outbox.SendAsync("s", Json(i));
        }

        // The health file is written in place, so it needs its space before the disk fills.
        DeviceHealthFile.Write(statePath, new DeviceHealthSnapshot { Pid = Environment.ProcessId, UpdatedAt = DateTimeOffset.UnixEpoch, Running = true, Faults = [] });
        using (var connection = OpenOutbox(statePath))
        using (var checkpoint = connection.CreateCommand())
        {
            // An empty WAL: every later write needs new space.
            checkpoint.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
            checkpoint.ExecuteNonQuery();
        }

        var filler = mount.Fill();
        var full = await Assert.ThrowsAsync<OutboxStorageException>(() => device.Outbox.SendAsync("s", Json(99)));
        output.WriteLine(full.Message);
        Assert.True(full.DiskFull);
        Assert.Contains("is full", full.Message, StringComparison.Ordinal);
        Assert.Contains(statePath, full.Message, StringComparison.Ordinal);

        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 10, Patience, "the stored messages published");
        await Eventually.ReturnsAsync(() => Task.FromResult(faults.Health.FaultOf(DeviceComponents.Publisher)), f => f?.Kind == DeviceFaultKind.DiskFull, Patience, "the publisher reports the full disk");
        Assert.Contains(_log.Lines, l => l.Contains("Outbox delivery paused (DiskFull", StringComparison.Ordinal));

        File.Delete(filler);
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "acknowledged rows deleted once space returns");
        await Eventually.ReturnsAsync(() => Task.FromResult(faults.Health.FaultOf(DeviceComponents.Publisher)), f => f is null, Patience, "the fault cleared");
        await device.Outbox.SendAsync("s", Json(10));
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 11, Patience, "a message sent after space returned stored");
        Assert.Equal(Enumerable.Range(0, 11), (await server.MessagesAsync(deviceId)).Select(N));
        using (var connection = OpenOutbox(statePath))
        using (var check = connection.CreateCommand())
        {
            check.CommandText = "PRAGMA integrity_check";
            Assert.Equal("ok", check.ExecuteScalar());
        }
    }

    /// <summary>Every fault the publisher reported (its own, and the quarantine's), in order.</summary>
    private sealed class FaultRecorder
    {
        private readonly ConcurrentQueue<DeviceFault> _seen = new();

        public FaultRecorder(DeviceHealth health)
        {
            Health = health;
            health.Changed += (_, _) =>
            {
                foreach (var component in new[] { DeviceComponents.Publisher, DeviceComponents.Quarantine })
                {
                    if (health.FaultOf(component) is { } fault && !_seen.Contains(fault))
                    {
                        _seen.Enqueue(fault);
                    }
                }
            };
        }

        public DeviceHealth Health { get; }

        public IReadOnlyList<DeviceFault> Seen => [.. _seen];
    }

    /// <summary>The test's output, with the lines kept so a test can check what was logged.</summary>
    private sealed class RecordingOutput(ITestOutputHelper inner) : ITestOutputHelper
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyList<string> Lines => [.. _lines];

        public void WriteLine(string message)
        {
            _lines.Enqueue(message);
            inner.WriteLine(message);
        }

        public void WriteLine(string format, params object[] args) => WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args));
    }

    /// <summary>A real small tmpfs (needs root, as in the CI container), unmounted when disposed.</summary>
    private sealed class TmpfsMount : IDisposable
    {
        private readonly TempDirectory _folder;

        private TmpfsMount(TempDirectory folder) => _folder = folder;

        public string Path => _folder.Path;

        public static TmpfsMount Create(long bytes, ITestOutputHelper output)
        {
            if (Environment.UserName != "root" && !string.Equals(Environment.GetEnvironmentVariable("USER"), "root", StringComparison.Ordinal))
            {
                Assert.Fail($"this test mounts a small tmpfs to fill the state folder's disk for real, which needs root (running as {Environment.UserName})");
            }

            var folder = new TempDirectory("enroll-tmpfs");
            var result = Run("mount", $"-t tmpfs -o size={bytes} tmpfs {folder.Path}");
            if (result.ExitCode != 0)
            {
                folder.Dispose();
                Assert.Fail($"mount -t tmpfs failed ({result.Output}); this test needs to mount a tmpfs");
            }

            output.WriteLine($"tmpfs of {bytes} bytes on {folder.Path}");
            return new TmpfsMount(folder);
        }

        /// <summary>Writes a filler file until the file system is full; returns its path.</summary>
        public string Fill()
        {
            var path = System.IO.Path.Combine(Path, "filler");
            using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
            var block = new byte[4096];
            try
            {
                while (true)
                {
                    stream.Write(block);
                    stream.Flush();
                }
            }
            catch (IOException)
            {
                // ENOSPC: the disk is full.
            }

            return path;
        }

        public void Dispose()
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Run("umount", $"-l {Path}");
            _folder.Dispose();
        }

        private static (int ExitCode, string Output) Run(string file, string arguments)
        {
            using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardError = true, RedirectStandardOutput = true })!;
            var text = process.StandardError.ReadToEnd() + process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, text.Trim());
        }
    }
}
