using System.Diagnostics;
using Enroll.Device.Diagnostics;
using Enroll.Protocol.Transfers;
using Enroll.Shared.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Enroll.Device.Outbox;

/// <summary>
/// Transfers (SPEC §2.7): a message too large for one packet, or a file, stored as chunk rows in <c>messages</c> (with
/// <c>transfer_id</c> and <c>chunk_index</c>) plus one row in <c>transfers</c> that holds its shape, hash, state
/// (<c>copying</c> while a file is read in, <c>ready</c> once its hash is known, <c>failed</c> once refused for good,
/// <c>delivered</c> once every chunk was acknowledged) and how many chunks the broker acknowledged. Chunk rows count
/// against the outbox's limits like messages (one row each); overflow drops whole transfers, never part of one.
/// </summary>
internal sealed partial class OutboxStore
{
    public const string TransferCopying = "copying";
    public const string TransferReady = "ready";
    public const string TransferFailed = "failed";
    public const string TransferDelivered = "delivered";

    private const string TransferSchema = """
        CREATE TABLE IF NOT EXISTS transfers (
            transfer_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            device_id TEXT,
            stream TEXT,
            name TEXT,
            content_type TEXT,
            message_id TEXT,
            created_at INTEGER NOT NULL,
            size INTEGER NOT NULL,
            chunk_size INTEGER NOT NULL,
            chunk_count INTEGER NOT NULL,
            sha256 TEXT,
            state TEXT NOT NULL,
            acknowledged INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            copier_pid INTEGER,
            finished_at INTEGER
        );
        CREATE INDEX IF NOT EXISTS messages_transfer ON messages (transfer_id, chunk_index) WHERE transfer_id IS NOT NULL;
        CREATE TABLE IF NOT EXISTS transfer_stats (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            readied INTEGER NOT NULL,
            abandoned INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO transfer_stats (id, readied, abandoned) VALUES (1, 0, 0);
        """;

    /// <summary>
    /// Brings an outbox from before transfers up to date, creates the transfer tables, removes transfers a crashed
    /// process left <c>copying</c> (their copy can never finish) and forgets delivered ones after
    /// <see cref="TransferLimits.FinishedRetention"/>.
    /// </summary>
    private static void OpenTransfers(SqliteDatabase database, TimeProvider timeProvider, ILogger logger)
    {
        using (var connection = database.OpenRead())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'transfer_id'";
            if (command.ExecuteScalar() is 0L)
            {
                try
                {
                    database.ExecuteScript("ALTER TABLE messages ADD COLUMN transfer_id TEXT; ALTER TABLE messages ADD COLUMN chunk_index INTEGER;");
                }
                catch (SqliteException ex) when (ex.Message.Contains("duplicate column", StringComparison.Ordinal))
                {
                    // Another process upgraded the file at the same moment.
                }
            }
        }

        database.ExecuteScript(TransferSchema);
        var now = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        var before = now - (long)TransferLimits.FinishedRetention.TotalMilliseconds;
        using (var connection = database.OpenRead())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = $"SELECT EXISTS (SELECT 1 FROM transfers WHERE state = '{TransferCopying}' OR (state = '{TransferDelivered}' AND finished_at < $before))";
            command.Parameters.AddWithValue("$before", before);
            if (command.ExecuteScalar() is 0L)
            {
                return;
            }
        }

        var abandoned = database.WriteAsync(context =>
        {
            var copying = new List<(string Id, long? Pid, string? Name, long Chunks)>();
            using (var reader = context.Command(
                "SELECT t.transfer_id, t.copier_pid, t.name, (SELECT COUNT(*) FROM messages m WHERE m.transfer_id = t.transfer_id) FROM transfers t WHERE t.state = $copying",
                ("$copying", TransferCopying)).ExecuteReader())
            {
                while (reader.Read())
                {
                    copying.Add((reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetInt64(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetInt64(3)));
                }
            }

            var removed = new List<(string Id, string? Name, long Chunks)>();
            foreach (var transfer in copying.Where(t => !IsAlive(t.Pid)))
            {
                RemoveTransfer(context, transfer.Id);
                removed.Add((transfer.Id, transfer.Name, transfer.Chunks));
            }

            if (removed.Count > 0)
            {
                context.Execute("UPDATE transfer_stats SET abandoned = abandoned + $n WHERE id = 1", ("$n", removed.Count));
            }

            context.Execute(
                "DELETE FROM transfers WHERE state = $delivered AND finished_at < $before",
                ("$delivered", TransferDelivered),
                ("$before", before));
            return removed;
        }).GetAwaiter().GetResult();
        foreach (var (id, name, chunks) in abandoned)
        {
            Log.TransferAbandoned(logger, id, name ?? "(message)", chunks);
        }
    }

    /// <summary>True when <paramref name="pid"/> names a running process other than this one (which cannot be copying yet).</summary>
    private static bool IsAlive(long? pid)
    {
        if (pid is not { } id || id == Environment.ProcessId || id is <= 0 or > int.MaxValue)
        {
            return false;
        }

        try
        {
            using var process = Process.GetProcessById((int)id);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Deletes a transfer's chunk rows and its transfer row, keeping the stats row exact; returns the rows removed.</summary>
    private static long RemoveTransfer(SqliteWriteContext context, string transferId)
    {
        var stats = Stats(context);
        long rows = 0;
        using (var reader = context.Command("DELETE FROM messages WHERE transfer_id = $t RETURNING size", ("$t", transferId)).ExecuteReader())
        {
            while (reader.Read())
            {
                rows++;
                stats.Depth--;
                stats.Bytes -= reader.GetInt64(0);
            }
        }

        context.Execute("DELETE FROM transfers WHERE transfer_id = $t", ("$t", transferId));
        return rows;
    }

    /// <summary>
    /// Makes room for <paramref name="rows"/> rows of <paramref name="bytes"/> payload bytes, or refuses: with
    /// <see cref="OutboxOverflowPolicy.Reject"/> by throwing before anything changes, with
    /// <see cref="OutboxOverflowPolicy.DropOldest"/> by deleting the oldest messages and whole transfers (never one being
    /// copied) until it fits. Returns how many messages and transfers were dropped.
    /// </summary>
    private static int MakeRoom(SqliteWriteContext context, BatchStats stats, long rows, long bytes, OutboxLimits limits, string what)
    {
        if (bytes > limits.MaxBytes)
        {
            throw new OutboxFullException($"the {what} ({bytes} bytes) is larger than the whole outbox ({limits.MaxBytes} bytes, OutboxMaxBytes)");
        }

        if (rows > limits.MaxMessages)
        {
            throw new OutboxFullException($"the {what} ({rows} chunks) needs more rows than the whole outbox holds ({limits.MaxMessages}, OutboxMaxMessages)");
        }

        if (stats.Depth + rows <= limits.MaxMessages && stats.Bytes + bytes <= limits.MaxBytes)
        {
            return 0;
        }

        if (limits.Overflow == OutboxOverflowPolicy.Reject)
        {
            throw new OutboxFullException($"the outbox is full ({stats.Depth} messages, {stats.Bytes} bytes; limits {limits.MaxMessages} messages, {limits.MaxBytes} bytes)");
        }

        var dropped = 0;
        var oldest = context.Prepared(
            $"SELECT seq, transfer_id FROM messages WHERE transfer_id IS NULL OR transfer_id NOT IN (SELECT transfer_id FROM transfers WHERE state = '{TransferCopying}') ORDER BY seq LIMIT 1",
            _ => { });
        var drop = context.Prepared("DELETE FROM messages WHERE seq = $seq RETURNING size", p => p.Add("$seq", SqliteType.Integer));
        while (stats.Depth + rows > limits.MaxMessages || stats.Bytes + bytes > limits.MaxBytes)
        {
            long sequence;
            string? transferId;
            using (var reader = oldest.ExecuteReader())
            {
                if (!reader.Read())
                {
                    throw new OutboxFullException($"the outbox is full of files being copied ({stats.Depth} rows, {stats.Bytes} bytes; limits {limits.MaxMessages} messages, {limits.MaxBytes} bytes)");
                }

                sequence = reader.GetInt64(0);
                transferId = reader.IsDBNull(1) ? null : reader.GetString(1);
            }

            if (transferId is null)
            {
                drop.Parameters["$seq"].Value = sequence;
                if (drop.ExecuteScalar() is long freed)
                {
                    stats.Depth--;
                    stats.Bytes -= freed;
                }
            }
            else
            {
                RemoveTransfer(context, transferId);
            }

            stats.Dropped++;
            dropped++;
        }

        return dropped;
    }

    /// <summary>
    /// Stores a message transfer whole: its transfer row (ready: the hash is known) and every chunk row, in one
    /// transaction, making room or refusing per the limits. A failure leaves nothing behind.
    /// </summary>
    public Task<int> InsertMessageTransferAsync(TransferInsert transfer, OutboxInsert message, OutboxLimits limits, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context =>
            {
                var stats = Stats(context);
                var dropped = MakeRoom(context, stats, transfer.ChunkCount, message.Payload.Length, limits, "message");
                InsertTransferRow(context, transfer, TransferReady);
                var chunk = new byte[transfer.ChunkSize];
                for (var index = 0; index < transfer.ChunkCount; index++)
                {
                    var length = TransferLimits.ChunkLength(transfer.Size, transfer.ChunkSize, transfer.ChunkCount, index);
                    var slice = length == chunk.Length ? chunk : new byte[length];
                    Array.Copy(message.Payload, (long)index * transfer.ChunkSize, slice, 0, length);
                    InsertChunkRow(context, message, transfer.TransferId, index, slice);
                }

                stats.Depth += transfer.ChunkCount;
                stats.Bytes += message.Payload.Length;
                context.Execute("UPDATE transfer_stats SET readied = readied + 1 WHERE id = 1");
                return dropped;
            },
            cancellationToken);

    /// <summary>Starts a file transfer: its row, state <c>copying</c>, owned by this process until <see cref="FinishCopyAsync"/>.</summary>
    public Task BeginCopyAsync(TransferInsert transfer, CancellationToken cancellationToken) =>
        _database.WriteAsync(context => InsertTransferRow(context, transfer, TransferCopying), cancellationToken);

    /// <summary>
    /// Appends chunks of a file being copied, in one transaction, making room or refusing per the limits (the transfer's
    /// own chunks are never dropped). Returns how many messages and transfers were dropped.
    /// </summary>
    public Task<int> InsertChunksAsync(string transferId, OutboxInsert template, IReadOnlyList<(int Index, byte[] Data, int Length)> chunks, OutboxLimits limits, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context =>
            {
                var stats = Stats(context);
                long bytes = chunks.Sum(c => (long)c.Length);
                var dropped = MakeRoom(context, stats, chunks.Count, bytes, limits, "file");
                foreach (var (index, data, length) in chunks)
                {
                    InsertChunkRow(context, template, transferId, index, length == data.Length ? data : data.AsSpan(0, length).ToArray());
                }

                stats.Depth += chunks.Count;
                stats.Bytes += bytes;
                return dropped;
            },
            cancellationToken);

    /// <summary>The copy is complete: records the file's size, chunk count and hash, and makes the transfer ready to send.</summary>
    public Task FinishCopyAsync(string transferId, long size, int chunkCount, string sha256, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context =>
            {
                context.Execute(
                    "UPDATE transfers SET size = $size, chunk_count = $count, sha256 = $sha, state = $ready, copier_pid = NULL WHERE transfer_id = $t AND state = $copying",
                    ("$size", size),
                    ("$count", chunkCount),
                    ("$sha", sha256),
                    ("$ready", TransferReady),
                    ("$t", transferId),
                    ("$copying", TransferCopying));
                context.Execute("UPDATE transfer_stats SET readied = readied + 1 WHERE id = 1");
            },
            cancellationToken);

    /// <summary>Removes a transfer whose copy did not finish (refused, cancelled, failed), with every chunk stored so far.</summary>
    public Task AbandonCopyAsync(string transferId) =>
        _database.WriteAsync(context => RemoveTransfer(context, transferId), CancellationToken.None);

    /// <summary>
    /// Moves what is left of a transfer to quarantine as one row (the transfer's ID, the reason, no payload: a message
    /// refused for good cannot be sent as it is, and a file is still where it was read from) and marks it failed.
    /// Returns false when nothing was left (another chunk's refusal got there first).
    /// </summary>
    public Task<bool> QuarantineTransferAsync(string transferId, string reason, DateTimeOffset now, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context =>
            {
                var stats = Stats(context);
                long first = -1;
                string? messageId = null;
                string? stream = null;
                using (var reader = context.Command("SELECT MIN(seq), message_id, stream FROM messages WHERE transfer_id = $t", ("$t", transferId)).ExecuteReader())
                {
                    if (reader.Read() && !reader.IsDBNull(0))
                    {
                        first = reader.GetInt64(0);
                        messageId = reader.IsDBNull(1) ? null : reader.GetString(1);
                        stream = reader.IsDBNull(2) ? null : reader.GetString(2);
                    }
                }

                if (first < 0)
                {
                    return false;
                }

                using (var reader = context.Command("DELETE FROM messages WHERE transfer_id = $t RETURNING size", ("$t", transferId)).ExecuteReader())
                {
                    while (reader.Read())
                    {
                        stats.Depth--;
                        stats.Bytes -= reader.GetInt64(0);
                    }
                }

                context.Execute(
                    "INSERT OR REPLACE INTO quarantine (seq, message_id, stream, reason, quarantined_at, payload) VALUES ($seq, $id, $stream, $reason, $now, NULL)",
                    ("$seq", first),
                    ("$id", messageId),
                    ("$stream", string.IsNullOrEmpty(stream) ? null : stream),
                    ("$reason", $"transfer {transferId}: {reason}"),
                    ("$now", now.ToUnixTimeMilliseconds()));
                context.Execute(
                    "UPDATE transfers SET state = $failed, reason = $reason, finished_at = $now WHERE transfer_id = $t",
                    ("$failed", TransferFailed),
                    ("$reason", reason),
                    ("$now", now.ToUnixTimeMilliseconds()),
                    ("$t", transferId));
                stats.Quarantined++;
                return true;
            },
            cancellationToken);

    /// <summary>
    /// Deletes the chunk rows of a transfer whose indexes fall in <paramref name="ranges"/> (the server holds them),
    /// counting them acknowledged; returns how many were deleted.
    /// </summary>
    public Task<int> DeleteChunksAsync(string transferId, IReadOnlyList<(int First, int Last)> ranges, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context =>
            {
                var stats = Stats(context);
                var deleted = 0;
                foreach (var (first, last) in ranges)
                {
                    using var reader = context.Command(
                        "DELETE FROM messages WHERE transfer_id = $t AND chunk_index BETWEEN $first AND $last RETURNING size",
                        ("$t", transferId),
                        ("$first", first),
                        ("$last", last)).ExecuteReader();
                    while (reader.Read())
                    {
                        stats.Depth--;
                        stats.Bytes -= reader.GetInt64(0);
                        deleted++;
                    }
                }

                if (deleted > 0)
                {
                    context.Execute("UPDATE delivery SET acknowledged = acknowledged + $n WHERE id = 1", ("$n", deleted));
                    ChunksAcknowledged(context, new Dictionary<string, int>(StringComparer.Ordinal) { [transferId] = deleted }, _timeProvider.GetUtcNow());
                }

                return deleted;
            },
            cancellationToken);

    /// <summary>Adds acknowledged chunks to their transfers' counts; a ready transfer with no rows left is delivered.</summary>
    private static void ChunksAcknowledged(SqliteWriteContext context, Dictionary<string, int> chunks, DateTimeOffset now)
    {
        foreach (var (transferId, count) in chunks)
        {
            context.Execute("UPDATE transfers SET acknowledged = acknowledged + $n WHERE transfer_id = $t", ("$n", count), ("$t", transferId));
            context.Execute(
                "UPDATE transfers SET state = $delivered, finished_at = $now WHERE transfer_id = $t AND state = $ready AND NOT EXISTS (SELECT 1 FROM messages WHERE transfer_id = $t)",
                ("$delivered", TransferDelivered),
                ("$now", now.ToUnixTimeMilliseconds()),
                ("$t", transferId),
                ("$ready", TransferReady));
        }
    }

    private static void InsertTransferRow(SqliteWriteContext context, TransferInsert transfer, string state) =>
        context.Execute(
            """
            INSERT INTO transfers (transfer_id, kind, device_id, stream, name, content_type, message_id, created_at, size, chunk_size, chunk_count, sha256, state, copier_pid)
            VALUES ($t, $kind, $device, $stream, $name, $type, $message, $created, $size, $chunkSize, $count, $sha, $state, $pid)
            """,
            ("$t", transfer.TransferId),
            ("$kind", transfer.Kind),
            ("$device", transfer.DeviceId),
            ("$stream", transfer.Stream),
            ("$name", transfer.Name),
            ("$type", transfer.ContentType),
            ("$message", transfer.MessageId),
            ("$created", transfer.CreatedAt.ToUnixTimeMilliseconds()),
            ("$size", transfer.Size),
            ("$chunkSize", transfer.ChunkSize),
            ("$count", transfer.ChunkCount),
            ("$sha", transfer.Sha256),
            ("$state", state),
            ("$pid", state == TransferCopying ? Environment.ProcessId : (object?)null));

    private static void InsertChunkRow(SqliteWriteContext context, OutboxInsert message, string transferId, int index, byte[] payload)
    {
        var insert = context.Prepared(
            $"""
            INSERT INTO messages (message_id, device_id, stream, created_at, content_type, content_encoding, properties, payload, size, schema_version, transfer_id, chunk_index)
            VALUES ($id, $device, $stream, $created, $type, $encoding, $properties, $payload, $size, {OutboxCodec.SchemaVersion}, $transfer, $index)
            """,
            p =>
            {
                p.Add("$id", SqliteType.Text);
                p.Add("$device", SqliteType.Text);
                p.Add("$stream", SqliteType.Text);
                p.Add("$created", SqliteType.Integer);
                p.Add("$type", SqliteType.Text);
                p.Add("$encoding", SqliteType.Text);
                p.Add("$properties", SqliteType.Text);
                p.Add("$payload", SqliteType.Blob);
                p.Add("$size", SqliteType.Integer);
                p.Add("$transfer", SqliteType.Text);
                p.Add("$index", SqliteType.Integer);
            });
        insert.Parameters["$id"].Value = message.MessageId;
        insert.Parameters["$device"].Value = (object?)message.DeviceId ?? DBNull.Value;
        insert.Parameters["$stream"].Value = message.Stream;
        insert.Parameters["$created"].Value = message.CreatedAt.ToUnixTimeMilliseconds();
        insert.Parameters["$type"].Value = (object?)message.ContentType ?? DBNull.Value;
        insert.Parameters["$encoding"].Value = (object?)message.ContentEncoding ?? DBNull.Value;
        insert.Parameters["$properties"].Value = (object?)message.PropertiesJson ?? DBNull.Value;
        insert.Parameters["$payload"].Value = payload;
        insert.Parameters["$size"].Value = payload.Length;
        insert.Parameters["$transfer"].Value = transferId;
        insert.Parameters["$index"].Value = index;
        insert.ExecuteNonQuery();
    }

    /// <summary>Ready transfers with chunk rows left (to ask the server about after a reconnect), oldest first.</summary>
    public List<TransferRow> PendingTransfers()
    {
        using var connection = _database.OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT {TransferColumns} FROM transfers t
            WHERE t.state = '{TransferReady}' AND EXISTS (SELECT 1 FROM messages m WHERE m.transfer_id = t.transfer_id)
            ORDER BY t.rowid
            """;
        return ReadTransfers(command);
    }

    /// <summary>One transfer, or null when the outbox holds nothing of it (never stored, dropped, or forgotten after delivery).</summary>
    public TransferRow? GetTransfer(string transferId)
    {
        using var connection = _database.OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {TransferColumns} FROM transfers t WHERE t.transfer_id = $t";
        command.Parameters.AddWithValue("$t", transferId);
        return ReadTransfers(command).SingleOrDefault();
    }

    /// <summary>How many transfers became ready, ever: the publisher looks again from the start when it grows.</summary>
    public long ReadyGeneration()
    {
        using var connection = _database.OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT readied FROM transfer_stats WHERE id = 1";
        return command.ExecuteScalar() is long readied ? readied : 0;
    }

    private const string TransferColumns = """
        t.transfer_id, t.kind, t.name, t.stream, t.size, t.chunk_count, t.state, t.acknowledged, t.reason,
        (SELECT COUNT(*) FROM messages m WHERE m.transfer_id = t.transfer_id)
        """;

    private static List<TransferRow> ReadTransfers(SqliteCommand command)
    {
        using var reader = command.ExecuteReader();
        var transfers = new List<TransferRow>();
        while (reader.Read())
        {
            transfers.Add(new TransferRow(
                reader.GetString(0),
                reader.GetString(1),
                reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetString(3),
                reader.GetInt64(4),
                reader.GetInt32(5),
                reader.GetString(6),
                reader.GetInt64(7),
                reader.IsDBNull(8) ? null : reader.GetString(8),
                reader.GetInt64(9)));
        }

        return transfers;
    }

    /// <summary>Transfers under way (copying, or ready with rows left) and transfers removed at start after a crash, ever.</summary>
    private static (long UnderWay, long Abandoned) ReadTransferStatistics(SqliteConnection connection)
    {
        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"""
                SELECT (SELECT COUNT(*) FROM transfers WHERE state IN ('{TransferCopying}', '{TransferReady}')), (SELECT abandoned FROM transfer_stats WHERE id = 1)
                """;
            using var reader = command.ExecuteReader();
            return reader.Read() ? (reader.GetInt64(0), reader.IsDBNull(1) ? 0 : reader.GetInt64(1)) : (0, 0);
        }
        catch (SqliteException ex) when (ex.Message.Contains("no such table", StringComparison.Ordinal))
        {
            // An outbox last opened by a version without transfers (read-only here, so it cannot be upgraded).
            return (0, 0);
        }
    }
}

/// <summary>A transfer on its way into the store.</summary>
internal sealed record TransferInsert(
    string TransferId,
    string Kind,
    string? DeviceId,
    string? Stream,
    string? Name,
    string? ContentType,
    string? MessageId,
    DateTimeOffset CreatedAt,
    long Size,
    int ChunkSize,
    int ChunkCount,
    string? Sha256);

/// <summary>A transfer as stored: its state, how many chunks were acknowledged and how many rows are left.</summary>
internal sealed record TransferRow(
    string TransferId,
    string Kind,
    string? Name,
    string? Stream,
    long Size,
    int ChunkCount,
    string State,
    long Acknowledged,
    string? Reason,
    long RowsLeft);
