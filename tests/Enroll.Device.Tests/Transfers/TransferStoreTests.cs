using System.Diagnostics;
using System.Security.Cryptography;
using Enroll.Device.Outbox;
using Enroll.Protocol.Transfers;
using Enroll.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device.Tests.Transfers;

/// <summary>
/// Transfers in the outbox file (issue 14): a message too large for one packet and a file are stored as chunk rows plus a
/// transfer row, all or nothing, within the outbox's limits, and a copy cut short by a crash does not linger.
/// </summary>
public sealed class TransferStoreTests : IDisposable
{
    private readonly TempDirectory _state = new();
    private readonly ListLogger<DeviceOutbox> _log = new();

    public void Dispose() => _state.Dispose();

    private DeviceOutbox Open(Action<EnrollDeviceOptions>? configure = null)
    {
        var options = new EnrollDeviceOptions { ClientId = "c", StatePath = _state.Path, CompressAbove = 0, ChunkBytes = 4096 };
        configure?.Invoke(options);
        return new DeviceOutbox(Options.Create(options), TimeProvider.System, _log, () => "dev_1");
    }

    private static byte[] Random(int length, int seed = 1)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private SqliteConnection Connect()
    {
        var connection = new SqliteConnection($"Data Source={_state.Combine(OutboxStore.FileName)};Pooling=false");
        connection.Open();
        return connection;
    }

    /// <summary>The chunk rows of a transfer in index order: (index, payload).</summary>
    private List<(long Index, byte[] Payload)> Chunks(string transferId)
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT chunk_index, payload FROM messages WHERE transfer_id = $t ORDER BY chunk_index";
        command.Parameters.AddWithValue("$t", transferId);
        using var reader = command.ExecuteReader();
        var chunks = new List<(long, byte[])>();
        while (reader.Read())
        {
            chunks.Add((reader.GetInt64(0), (byte[])reader.GetValue(1)));
        }

        return chunks;
    }

    private long Count(string sql)
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return (long)command.ExecuteScalar()!;
    }

    private string? TransferHash(string transferId)
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT sha256 FROM transfers WHERE transfer_id = $t";
        command.Parameters.AddWithValue("$t", transferId);
        return command.ExecuteScalar() as string;
    }

    [Fact]
    public async Task Send_PayloadLargerThanChunkBytes_IsStoredAsChunkRowsOfOneTransfer_WithTheHashOfTheWhole()
    {
        await using var outbox = Open();
        var payload = Random(10_000);

        var id = await outbox.SendAsync("logs/big", payload);

        var chunks = Chunks(id);
        Assert.Equal([0L, 1, 2], chunks.Select(c => c.Index));
        Assert.Equal([4096, 4096, 10_000 - 8192], chunks.Select(c => c.Payload.Length));
        Assert.Equal(payload, chunks.SelectMany(c => c.Payload).ToArray());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(payload)), TransferHash(id));
        var transfer = outbox.GetTransfer(id)!;
        Assert.Equal(OutboxTransferState.Sending, transfer.State);
        Assert.Equal(3, transfer.ChunkCount);
        var statistics = outbox.GetStatistics();
        Assert.Equal(3, statistics.Depth);
        Assert.Equal(10_000, statistics.Bytes);
        Assert.Equal(1, statistics.Transfers);

        // A payload that fits one chunk is one ordinary row, as before.
        var small = await outbox.SendAsync("logs/big", Random(4096));
        Assert.Empty(Chunks(small));
        Assert.Null(outbox.GetTransfer(small));
    }

    [Fact]
    public async Task Send_ChunkedMessage_WhenTheDiskFillsMidway_LeavesNothingBehind_AndWorksOnceSpaceReturns()
    {
        await using var outbox = Open();
        await outbox.SendAsync("s", new byte[] { 1 });
        await outbox.Store.CapFileSizeAsync(capped: true);

        await Assert.ThrowsAsync<OutboxStorageException>(() => outbox.SendAsync("s", Random(64 * 1024)));

        await outbox.Store.CapFileSizeAsync(capped: false);
        Assert.Equal(1, Count("SELECT COUNT(*) FROM messages"));
        Assert.Equal(0, Count("SELECT COUNT(*) FROM transfers"));
        Assert.Equal(1, outbox.GetStatistics().Depth);
        var id = await outbox.SendAsync("s", Random(64 * 1024));
        Assert.Equal(16, Chunks(id).Count);
        Assert.Equal(17, outbox.GetStatistics().Depth);
    }

    [Fact]
    public async Task Send_ChunkedMessage_ThatWouldOverflowWithReject_IsRefusedWhole()
    {
        await using var outbox = Open(o => o.OutboxMaxMessages = 4);
        await outbox.SendAsync("s", new byte[] { 1 });

        await Assert.ThrowsAsync<OutboxFullException>(() => outbox.SendAsync("s", Random(4 * 4096)));

        Assert.Equal(1, Count("SELECT COUNT(*) FROM messages"));
        Assert.Equal(0, Count("SELECT COUNT(*) FROM transfers"));
    }

    [Fact]
    public async Task DropOldest_DropsAWholeTransfer_NeverPartOfIt()
    {
        await using var outbox = Open(o =>
        {
            o.OutboxMaxMessages = 5;
            o.OutboxOverflow = OutboxOverflowPolicy.DropOldest;
        });
        var transfer = await outbox.SendAsync("s", Random(3 * 4096));
        await outbox.SendAsync("s", new byte[] { 1 });
        await outbox.SendAsync("s", new byte[] { 2 });

        // Six rows would not fit five: the oldest item, the whole three-chunk transfer, makes room.
        await outbox.SendAsync("s", new byte[] { 3 });

        Assert.Empty(Chunks(transfer));
        Assert.Null(outbox.GetTransfer(transfer));
        var statistics = outbox.GetStatistics();
        Assert.Equal(3, statistics.Depth);
        Assert.Equal(1, statistics.Dropped);
        Assert.Equal(0, statistics.Transfers);
    }

    [Fact]
    public async Task SendFile_CopiesTheStreamInChunks_WithTheHashOfTheWhole_AndMakesItReady()
    {
        await using var outbox = Open();
        var content = Random(10 * 4096 + 17);

        var id = await outbox.SendFileAsync("trace.bin", new MemoryStream(content), "application/octet-stream");

        var chunks = Chunks(id);
        Assert.Equal(11, chunks.Count);
        Assert.Equal(content, chunks.SelectMany(c => c.Payload).ToArray());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(content)), TransferHash(id));
        var transfer = outbox.GetTransfer(id)!;
        Assert.Equal(TransferKinds.File, transfer.Kind);
        Assert.Equal("trace.bin", transfer.Name);
        Assert.Equal(content.Length, transfer.Size);
        Assert.Equal(11, transfer.ChunkCount);
        Assert.Equal(OutboxTransferState.Sending, transfer.State);
    }

    [Fact]
    public async Task SendFile_FromAPath_UsesTheFilesName_AndAnEmptyFileIsOneEmptyChunk()
    {
        await using var outbox = Open();
        var path = _state.Combine("empty.log");
        await File.WriteAllBytesAsync(path, []);

        var id = await outbox.SendFileAsync(path);

        var transfer = outbox.GetTransfer(id)!;
        Assert.Equal("empty.log", transfer.Name);
        Assert.Equal(0, transfer.Size);
        Assert.Equal(1, transfer.ChunkCount);
        Assert.Empty(Assert.Single(Chunks(id)).Payload);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(ReadOnlySpan<byte>.Empty)), TransferHash(id));
    }

    [Theory]
    [InlineData("")]
    [InlineData("../etc/passwd")]
    [InlineData("a\nb")]
    public async Task SendFile_WithAnInvalidName_IsRefused(string name)
    {
        await using var outbox = Open();
        await Assert.ThrowsAsync<ArgumentException>(() => outbox.SendFileAsync(name, new MemoryStream([1])));
        Assert.Equal(0, Count("SELECT COUNT(*) FROM transfers"));
    }

    [Fact]
    public async Task SendFile_OfKnownLengthOverMaxFileBytes_IsRefusedBeforeReadingAByte()
    {
        await using var outbox = Open(o => o.MaxFileBytes = 10_000);
        var content = new CountingStream(new MemoryStream(Random(10_001)));

        var refused = await Assert.ThrowsAsync<FileTooLargeException>(() => outbox.SendFileAsync("a.bin", content));

        Assert.Contains("MaxFileBytes", refused.Message, StringComparison.Ordinal);
        Assert.Equal(10_000, refused.Limit);
        Assert.Equal(0, content.BytesRead);
        Assert.Equal(0, Count("SELECT COUNT(*) FROM transfers"));
    }

    [Fact]
    public async Task SendFile_OfUnknownLengthOverMaxFileBytes_IsRefusedWhenReached_AndWhatWasCopiedIsRemoved()
    {
        await using var outbox = Open(o => o.MaxFileBytes = 20_000);
        var content = new CountingStream(new MemoryStream(Random(100_000)), seekable: false);

        var refused = await Assert.ThrowsAsync<FileTooLargeException>(() => outbox.SendFileAsync("a.bin", content));

        Assert.Contains("MaxFileBytes", refused.Message, StringComparison.Ordinal);
        Assert.InRange(content.BytesRead, 20_001, 20_000 + 4096);
        Assert.Equal(0, Count("SELECT COUNT(*) FROM messages"));
        Assert.Equal(0, Count("SELECT COUNT(*) FROM transfers"));
        Assert.Equal(0, outbox.GetStatistics().Depth);
        Assert.Equal(0, outbox.GetStatistics().Bytes);
    }

    [Fact]
    public async Task SendFile_LargerThanTheWholeOutbox_IsRefusedBeforeCopying_NamingTheOption()
    {
        await using var outbox = Open(o => o.OutboxMaxBytes = 64 * 1024);
        var content = new CountingStream(new MemoryStream(Random(64 * 1024 + 1)));

        var refused = await Assert.ThrowsAsync<OutboxFullException>(() => outbox.SendFileAsync("a.bin", content));

        Assert.Contains("OutboxMaxBytes", refused.Message, StringComparison.Ordinal);
        Assert.Equal(0, content.BytesRead);
    }

    [Fact]
    public async Task SendFile_WithReject_OnAnOutboxWithoutRoom_ThrowsOutboxFull_AndStoresNothing()
    {
        await using var outbox = Open(o => o.OutboxMaxBytes = 64 * 1024);
        await outbox.SendFileAsync("first.bin", new MemoryStream(Random(40 * 1024)));

        // Known length: refused before copying. Unknown length: refused when a batch does not fit, the copy removed.
        await Assert.ThrowsAsync<OutboxFullException>(() => outbox.SendFileAsync("second.bin", new MemoryStream(Random(40 * 1024))));
        await Assert.ThrowsAsync<OutboxFullException>(() => outbox.SendFileAsync("third.bin", new CountingStream(new MemoryStream(Random(40 * 1024)), seekable: false)));

        Assert.Equal(1, Count("SELECT COUNT(*) FROM transfers"));
        Assert.Equal(40 * 1024, outbox.GetStatistics().Bytes);
    }

    [Fact]
    public async Task SendFile_WithDropOldest_DropsWholeOlderTransfers_ButNeverItsOwnChunks()
    {
        await using var outbox = Open(o =>
        {
            o.OutboxMaxBytes = 64 * 1024;
            o.OutboxOverflow = OutboxOverflowPolicy.DropOldest;
        });
        var first = await outbox.SendFileAsync("first.bin", new MemoryStream(Random(40 * 1024)));
        await outbox.SendAsync("s", new byte[] { 1 });

        var second = await outbox.SendFileAsync("second.bin", new CountingStream(new MemoryStream(Random(60 * 1024, seed: 2)), seekable: false));

        Assert.Null(outbox.GetTransfer(first));
        Assert.Equal(15, Chunks(second).Count);
        Assert.Equal(60 * 1024 + 1, outbox.GetStatistics().Bytes);
        Assert.Equal(1, outbox.GetStatistics().Dropped);
    }

    [Fact]
    public async Task SendFile_Cancelled_LeavesNothingBehind()
    {
        await using var outbox = Open();
        using var cancel = new CancellationTokenSource();
        var content = new CountingStream(new MemoryStream(Random(8 * 1024 * 1024)), seekable: false) { AfterBytes = (6 * 1024 * 1024, cancel.Cancel) };

        // Cancelled after the first batch (4 MiB) was committed.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => outbox.SendFileAsync("a.bin", content, cancellationToken: cancel.Token));

        Assert.Equal(0, Count("SELECT COUNT(*) FROM messages"));
        Assert.Equal(0, Count("SELECT COUNT(*) FROM transfers"));
    }

    [Fact]
    public async Task FileBeingCopied_IsNotReadForPublishing_UntilItsCopyCompletes()
    {
        await using var outbox = Open();
        var halfway = new TaskCompletionSource();
        var resume = new TaskCompletionSource();
        var content = new CountingStream(new MemoryStream(Random(12 * 1024 * 1024)), seekable: false)
        {
            PauseAfter = (6 * 1024 * 1024, halfway, resume.Task),
        };

        var send = outbox.SendFileAsync("a.bin", content);
        await halfway.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await outbox.SendAsync("s", new byte[] { 7 });
        Assert.True(Count("SELECT COUNT(*) FROM messages WHERE transfer_id IS NOT NULL") > 0, "some chunks committed while copying");
        var before = outbox.Store.ReadAfter(0, 10_000);
        Assert.Equal([7], Assert.Single(before).Payload);
        Assert.Empty(outbox.Store.PendingTransfers());
        Assert.Equal(OutboxTransferState.Copying, outbox.GetTransfer(CopyingId())!.State);

        resume.SetResult();
        var id = await send;
        Assert.Equal(3 * 1024 + 1, outbox.Store.ReadAfter(0, 10_000).Count);
        Assert.Equal(OutboxTransferState.Sending, outbox.GetTransfer(id)!.State);
    }

    private string CopyingId()
    {
        using var connection = Connect();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT transfer_id FROM transfers WHERE state = 'copying'";
        return (string)command.ExecuteScalar()!;
    }

    [Fact]
    public async Task Reads_AreBoundedByBytes_NotOnlyRows()
    {
        await using var outbox = Open(o => o.ChunkBytes = 128 * 1024);
        await outbox.SendFileAsync("a.bin", new MemoryStream(Random(8 * 1024 * 1024)));

        var rows = outbox.Store.ReadAfter(0, 256, OutboxPublisher.ReadBudgetBytes);

        Assert.Equal(OutboxPublisher.ReadBudgetBytes / (128 * 1024), rows.Count);
        Assert.True(rows.Sum(r => (long)r.Payload.Length) <= OutboxPublisher.ReadBudgetBytes);
        Assert.Equal(64, outbox.Store.ReadAfter(0, 256).Count);
    }

    [Fact]
    public async Task CopyLeftByACrashedProcess_IsRemovedWhenTheOutboxOpens_LoggedAndCounted_ButALiveCopyIsKept()
    {
        string crashed;
        string live;
        using var liveProcess = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        try
        {
            await using (var outbox = Open())
            {
                crashed = await StartCopyAsync(outbox, "crashed.bin");
                live = await StartCopyAsync(outbox, "live.bin");
                await outbox.SendAsync("s", new byte[] { 1 });
            }

            using (var exited = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
            {
                await exited.WaitForExitAsync();
                using var connection = Connect();
                using var command = connection.CreateCommand();
                command.CommandText = "UPDATE transfers SET copier_pid = CASE transfer_id WHEN $crashed THEN $dead ELSE $alive END";
                command.Parameters.AddWithValue("$crashed", crashed);
                command.Parameters.AddWithValue("$dead", exited.Id);
                command.Parameters.AddWithValue("$alive", liveProcess.Id);
                command.ExecuteNonQuery();
            }

            await using (var reopened = Open())
            {
                Assert.Empty(Chunks(crashed));
                Assert.Null(reopened.GetTransfer(crashed));
                Assert.Equal(OutboxTransferState.Copying, reopened.GetTransfer(live)!.State);
                var statistics = reopened.GetStatistics();
                Assert.Equal(1, statistics.AbandonedTransfers);
                Assert.Equal(1 + Chunks(live).Count, statistics.Depth);
                Assert.Contains(_log.Lines, l => l.Contains(crashed, StringComparison.Ordinal) && l.Contains("crashed.bin", StringComparison.Ordinal));
            }
        }
        finally
        {
            liveProcess.Kill();
        }
    }

    /// <summary>A copy stopped halfway, as a crash leaves it: the transfer row copying, two batches of chunks committed.</summary>
    private static async Task<string> StartCopyAsync(DeviceOutbox outbox, string name)
    {
        var id = "01m80000000000000000" + name[..6].PadRight(6, '0');
        var template = new OutboxInsert(id, "dev_1", string.Empty, DateTimeOffset.UnixEpoch, null, null, null, []);
        var limits = new OutboxLimits(1000, 1 << 30, OutboxOverflowPolicy.Reject);
        await outbox.Store.BeginCopyAsync(new TransferInsert(id, TransferKinds.File, "dev_1", null, name, null, null, DateTimeOffset.UnixEpoch, 0, 4096, 0, null), CancellationToken.None);
        await outbox.Store.InsertChunksAsync(id, template, [(0, new byte[4096], 4096), (1, new byte[4096], 4096)], limits, CancellationToken.None);
        await outbox.Store.InsertChunksAsync(id, template, [(2, new byte[4096], 4096)], limits, CancellationToken.None);
        return id;
    }

    [Fact]
    public async Task UnderMqtt311_AMessageLargerThanOnePacket_AndAFile_AreRefused_SinceChunksNeedUserProperties()
    {
        await using var outbox = Open(o => o.ProtocolVersion = MqttProtocol.V311);

        var message = await Assert.ThrowsAsync<MessageTooLargeException>(() => outbox.SendAsync("s", Random(5000)));
        var file = await Assert.ThrowsAsync<NotSupportedException>(() => outbox.SendFileAsync("a.bin", new MemoryStream([1])));

        Assert.Contains("MQTT 5", message.Message, StringComparison.Ordinal);
        Assert.Contains("MQTT 5", file.Message, StringComparison.Ordinal);
        Assert.Equal(0, outbox.GetStatistics().Depth);
        await outbox.SendAsync("s", Random(4096));
        Assert.Equal(1, outbox.GetStatistics().Depth);
    }

    [Fact]
    public async Task AnOutboxFromBeforeTransfers_IsUpgradedInPlace_KeepingItsMessages()
    {
        using (var connection = Connect())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, device_id TEXT, stream TEXT NOT NULL,
                    created_at INTEGER NOT NULL, content_type TEXT, content_encoding TEXT, properties TEXT, payload BLOB NOT NULL,
                    size INTEGER NOT NULL, schema_version INTEGER NOT NULL);
                INSERT INTO messages (message_id, device_id, stream, created_at, payload, size, schema_version)
                VALUES ('01m8000000000000000000000a', 'dev_1', 's', 0, x'010203', 3, 1);
                """;
            command.ExecuteNonQuery();
        }

        await using var outbox = Open();
        Assert.Equal(1, outbox.GetStatistics().Depth);
        Assert.Equal([1, 2, 3], Assert.Single(outbox.Store.ReadAfter(0, 10)).Payload);
        var id = await outbox.SendAsync("s", Random(3 * 4096));
        Assert.Equal(3, Chunks(id).Count);
    }
}

/// <summary>A stream that counts what was read from it, and can pretend not to know its length or stop halfway.</summary>
internal sealed class CountingStream(Stream inner, bool seekable = true) : Stream
{
    public long BytesRead { get; private set; }

    public (long Bytes, Action Action)? AfterBytes { get; init; }

    public (long Bytes, TaskCompletionSource Reached, Task Resume)? PauseAfter { get; init; }

    public override bool CanRead => true;

    public override bool CanSeek => seekable;

    public override bool CanWrite => false;

    public override long Length => seekable ? inner.Length : throw new NotSupportedException();

    public override long Position
    {
        get => seekable ? inner.Position : throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (PauseAfter is { } pause && BytesRead >= pause.Bytes)
        {
            pause.Reached.TrySetResult();
            await pause.Resume.ConfigureAwait(false);
        }

        var read = await inner.ReadAsync(buffer[..Math.Min(buffer.Length, 64 * 1024)], cancellationToken).ConfigureAwait(false);
        BytesRead += read;
        if (AfterBytes is { } after && BytesRead >= after.Bytes)
        {
            after.Action();
        }

        return read;
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>Keeps every log line, formatted.</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines)
        {
            _lines.Add($"{eventId.Id} {formatter(state, exception)}");
        }
    }
}
