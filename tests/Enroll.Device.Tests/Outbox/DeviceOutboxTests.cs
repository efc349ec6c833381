using System.IO.Compression;
using System.Text;
using Enroll.Device.Outbox;
using Enroll.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Enroll.Device.Tests.Outbox;

public sealed class DeviceOutboxTests : IDisposable
{
    private readonly TempDirectory _state = new();

    private DeviceOutbox Open(Action<EnrollDeviceOptions>? configure = null, string? deviceId = "dev_1")
    {
        var options = new EnrollDeviceOptions { ClientId = "c", StatePath = _state.Path };
        configure?.Invoke(options);
        return new DeviceOutbox(Options.Create(options), TimeProvider.System, NullLogger<DeviceOutbox>.Instance, () => deviceId);
    }

    private List<(string Id, string? Device, byte[] Payload, string? Encoding)> Rows()
    {
        using var connection = new SqliteConnection($"Data Source={_state.Combine(OutboxStore.FileName)};Pooling=false");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT message_id, device_id, payload, content_encoding FROM messages ORDER BY seq";
        using var reader = command.ExecuteReader();
        var rows = new List<(string, string?, byte[], string?)>();
        while (reader.Read())
        {
            rows.Add((reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1), (byte[])reader.GetValue(2), reader.IsDBNull(3) ? null : reader.GetString(3)));
        }

        return rows;
    }

    [Fact]
    public async Task Send_WhenItReturns_TheMessageIsCommittedToTheFileWithItsDeviceId()
    {
        await using (var outbox = Open())
        {
            var id = await outbox.SendAsync("telemetry", """{"t":1}"""u8.ToArray());
            var row = Assert.Single(Rows());
            Assert.Equal(id, row.Id);
            Assert.Equal("dev_1", row.Device);
            Assert.Equal(26, id.Length);
        }
    }

    [Fact]
    public async Task ManyConcurrentSenders_ShareCommits()
    {
        await using var outbox = Open();

        // Another process holds the file's write lock, so the senders cannot commit one by one as they arrive: the
        // first waits for the lock in its own commit, and the rest queue behind it.
        var sends = new List<Task<string>>();
        using (var other = new SqliteConnection($"Data Source={_state.Combine(OutboxStore.FileName)};Pooling=false"))
        {
            other.Open();
            using var lockFile = other.BeginTransaction(deferred: false);
            sends.AddRange(Enumerable.Range(0, 256).Select(i => Task.Run(() => outbox.SendAsync("s", Encoding.UTF8.GetBytes($"{{\"n\":{i}}}")))));
            await Eventually.ReturnsAsync(() => Task.FromResult(outbox.Store.QueuedWrites), n => n >= 255, TimeSpan.FromSeconds(20), "255 sends queued");
            lockFile.Rollback();
        }

        await Task.WhenAll(sends);
        var (commits, writes) = outbox.Store.CommitStatistics;
        Assert.Equal(256, writes);
        Assert.True(commits < writes, $"{commits} commits for {writes} writes");
        Assert.Equal(256, outbox.GetStatistics().Depth);
    }

    [Fact]
    public async Task MessageIds_AreUniqueAndTimeOrdered()
    {
        await using var outbox = Open();
        var ids = new List<string>();
        for (var i = 0; i < 200; i++)
        {
            ids.Add(await outbox.SendAsync("s", new byte[] { 1 }));
        }

        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Equal(ids.Order(StringComparer.Ordinal), ids);
    }

    [Fact]
    public async Task Overflow_WithReject_ThrowsAndKeepsWhatIsStored()
    {
        await using var outbox = Open(o => o.OutboxMaxMessages = 3);
        for (var i = 0; i < 3; i++)
        {
            await outbox.SendAsync("s", new byte[] { (byte)i });
        }

        await Assert.ThrowsAsync<OutboxFullException>(() => outbox.SendAsync("s", new byte[] { 9 }));
        Assert.Equal(3, outbox.GetStatistics().Depth);
        Assert.Equal([0, 1, 2], Rows().Select(r => (int)r.Payload[0]));
    }

    [Fact]
    public async Task Overflow_WithDropOldest_DropsAndCountsTheOldest()
    {
        await using var outbox = Open(o =>
        {
            o.OutboxMaxMessages = 3;
            o.OutboxOverflow = OutboxOverflowPolicy.DropOldest;
        });
        for (var i = 0; i < 5; i++)
        {
            await outbox.SendAsync("s", new byte[] { (byte)i });
        }

        var statistics = outbox.GetStatistics();
        Assert.Equal(3, statistics.Depth);
        Assert.Equal(2, statistics.Dropped);
        Assert.Equal([2, 3, 4], Rows().Select(r => (int)r.Payload[0]));
    }

    [Fact]
    public async Task Overflow_ByBytes_IsEnforcedToo()
    {
        await using var outbox = Open(o =>
        {
            o.OutboxMaxBytes = 2048;
            o.CompressAbove = 0;
        });
        await outbox.SendAsync("s", new byte[1500]);

        await Assert.ThrowsAsync<OutboxFullException>(() => outbox.SendAsync("s", new byte[1000]));
        Assert.Equal(1500, outbox.GetStatistics().Bytes);
    }

    [Fact]
    public async Task LargeCompressiblePayloads_AreStoredGzipped_AndDecompressToTheOriginal()
    {
        var original = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("""{"temperature":21.5,"humidity":40},""", 500)));
        await using var outbox = Open(o => o.CompressAbove = 1024);

        await outbox.SendAsync("s", original);

        var row = Assert.Single(Rows());
        Assert.Equal("gzip", row.Encoding);
        Assert.True(row.Payload.Length < original.Length / 5);
        using var gzip = new GZipStream(new MemoryStream(row.Payload), CompressionMode.Decompress);
        using var plain = new MemoryStream();
        gzip.CopyTo(plain);
        Assert.Equal(original, plain.ToArray());
    }

    [Fact]
    public async Task InvalidStreamNames_AreRefused()
    {
        await using var outbox = Open();

        await Assert.ThrowsAsync<ArgumentException>(() => outbox.SendAsync("a/+/b", new byte[1]));
        await Assert.ThrowsAsync<ArgumentException>(() => outbox.SendAsync("", new byte[1]));
    }

    [Fact]
    public async Task DrainedSpace_IsGivenBack()
    {
        await using var outbox = Open(o => o.CompressAbove = 0);
        await Task.WhenAll(Enumerable.Range(0, 2000).Select(_ => outbox.SendAsync("s", new byte[4096])));
        var file = new FileInfo(_state.Combine(OutboxStore.FileName));
        await outbox.Store.ReclaimAsync();
        var full = new FileInfo(file.FullName).Length;

        var sequences = outbox.Store.ReadAfter(0, 5000).Select(r => r.Sequence).ToList();
        await outbox.Store.DeleteAsync(sequences, published: sequences.Count, CancellationToken.None);

        var drained = new FileInfo(file.FullName).Length;
        Assert.True(full > 4_000_000, $"full file {full} bytes");
        Assert.True(drained < full / 10, $"{drained} bytes after draining, {full} before");
        Assert.True(new FileInfo(file.FullName + "-wal").Length < 1_000_000);
        var counts = outbox.GetStatistics();
        Assert.Equal((0, 2000, 2000), (counts.Depth, counts.Sent, counts.Acknowledged));
    }

    [Fact]
    public async Task Statistics_OfAnOutboxWithoutDeliveryCounts_AreReadWithZeroSentAndAcknowledged()
    {
        await using (var outbox = Open())
        {
            await outbox.SendAsync("s", Encoding.UTF8.GetBytes("{}"));
        }

        // As a version before delivery counts left the file; a status read is read-only and cannot add the table.
        using (var connection = new SqliteConnection($"Data Source={_state.Combine(OutboxStore.FileName)};Pooling=false"))
        {
            connection.Open();
            using var drop = connection.CreateCommand();
            drop.CommandText = "DROP TABLE delivery";
            drop.ExecuteNonQuery();
        }

        var counts = DeviceOutbox.ReadStatistics(_state.Path)!;
        Assert.Equal((1, 0, 0), (counts.Depth, counts.Sent, counts.Acknowledged));
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("truncated")]
    public async Task CorruptOrTruncatedDatabase_IsMovedAside_AndAFreshOneWorks(string damage)
    {
        var path = _state.Combine(OutboxStore.FileName);
        if (damage == "garbage")
        {
            await File.WriteAllBytesAsync(path, Encoding.ASCII.GetBytes(new string('x', 10_000)));
        }
        else
        {
            await using (var outbox = Open(o => o.CompressAbove = 0))
            {
                await Task.WhenAll(Enumerable.Range(0, 300).Select(_ => outbox.SendAsync("s", new byte[4096])));
                await outbox.Store.ReclaimAsync();
            }

            SqliteConnection.ClearAllPools();
            var bytes = await File.ReadAllBytesAsync(path);
            await File.WriteAllBytesAsync(path, bytes[..(bytes.Length / 3)]);
        }

        await using var fresh = Open();
        await fresh.SendAsync("s", new byte[] { 42 });

        Assert.Single(Directory.GetFiles(_state.Path, OutboxStore.FileName + ".corrupt-*"), f => !f.EndsWith("-wal", StringComparison.Ordinal) && !f.EndsWith("-shm", StringComparison.Ordinal));
        Assert.Equal(1, fresh.GetStatistics().Depth);
    }

    [Fact]
    public void Decode_RefusesUnknownSchemasTruncationsAndBadColumns()
    {
        var good = new OutboxRow(1, "01m8000000000000000000000a", "dev_1", "s", 0, null, null, null, [1, 2, 3], 3, 1);

        Assert.True(OutboxCodec.TryDecode(good, out _, out _));
        Assert.False(OutboxCodec.TryDecode(good with { SchemaVersion = 99 }, out _, out var schema));
        Assert.Contains("schema", schema, StringComparison.Ordinal);
        Assert.False(OutboxCodec.TryDecode(good with { Size = 10 }, out _, out var truncated));
        Assert.Contains("truncated", truncated, StringComparison.Ordinal);
        Assert.False(OutboxCodec.TryDecode(good with { PropertiesJson = "{not json" }, out _, out _));
        Assert.False(OutboxCodec.TryDecode(good with { Stream = "a/#" }, out _, out _));
        Assert.False(OutboxCodec.TryDecode(good with { ContentEncoding = "lz4" }, out _, out _));
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
