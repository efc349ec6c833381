using Enroll.Device.State;
using Enroll.Shared.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Enroll.Device.Outbox;

/// <summary>
/// The outbox table in <c>outbox.db</c> (SQLite, WAL). Inserts go through the group-commit writer and enforce the
/// limits in the same transaction; a one-row <c>stats</c> table keeps depth and bytes exact across processes (a device's
/// agent and a separate <c>enroll device send</c> may share the file).
/// </summary>
internal sealed partial class OutboxStore : IAsyncDisposable
{
    public const string FileName = "outbox.db";

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id TEXT NOT NULL,
            device_id TEXT,
            stream TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            content_type TEXT,
            content_encoding TEXT,
            properties TEXT,
            payload BLOB NOT NULL,
            size INTEGER NOT NULL,
            schema_version INTEGER NOT NULL,
            transfer_id TEXT,
            chunk_index INTEGER
        );
        CREATE TABLE IF NOT EXISTS quarantine (
            seq INTEGER PRIMARY KEY,
            message_id TEXT,
            stream TEXT,
            reason TEXT NOT NULL,
            quarantined_at INTEGER NOT NULL,
            payload BLOB
        );
        CREATE TABLE IF NOT EXISTS stats (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            depth INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            dropped INTEGER NOT NULL,
            quarantined INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO stats (id, depth, bytes, dropped, quarantined) VALUES (1, 0, 0, 0, 0);
        CREATE TABLE IF NOT EXISTS delivery (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            sent INTEGER NOT NULL,
            acknowledged INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO delivery (id, sent, acknowledged) VALUES (1, 0, 0);
        UPDATE stats SET depth = (SELECT COUNT(*) FROM messages), bytes = (SELECT COALESCE(SUM(size), 0) FROM messages) WHERE id = 1;
        """;

    /// <summary>
    /// Depth, bytes, dropped, quarantined, sent, acknowledged and the oldest message's creation time, in that order;
    /// readable by another process (<c>enroll device status</c>) while a device writes.
    /// </summary>
    internal const string StatisticsQuery = """
        SELECT s.depth, s.bytes, s.dropped, s.quarantined, d.sent, d.acknowledged, (SELECT created_at FROM messages ORDER BY seq LIMIT 1)
        FROM stats s CROSS JOIN delivery d WHERE s.id = 1 AND d.id = 1
        """;

    private const string StatisticsQueryWithoutDelivery = """
        SELECT s.depth, s.bytes, s.dropped, s.quarantined, 0, 0, (SELECT created_at FROM messages ORDER BY seq LIMIT 1)
        FROM stats s WHERE s.id = 1
        """;

    private const string Columns = "m.seq, m.message_id, m.device_id, m.stream, m.created_at, m.content_type, m.content_encoding, m.properties, m.payload, m.size, m.schema_version";

    private readonly SqliteDatabase _database;
    private readonly TimeProvider _timeProvider;

    public OutboxStore(string statePath, OutboxDurability durability, TimeProvider timeProvider, ILogger logger)
    {
        var path = System.IO.Path.Combine(statePath, FileName);
        _timeProvider = timeProvider;
        try
        {
            _database = StateDatabaseOpener.Open(
                path,
                Schema,
                durability == OutboxDurability.Full ? SqliteDurability.Full : SqliteDurability.Relaxed,
                timeProvider,
                logger);
            OpenTransfers(_database, timeProvider, logger);
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 5 or 6)
        {
            throw new OutboxStorageException($"cannot open the outbox {path}: another process holds its write lock ({ex.Message})", ex) { Locked = true };
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 13)
        {
            throw new OutboxStorageException($"cannot open the outbox {path}: the disk holding the state folder {statePath} is full ({ex.Message})", ex) { DiskFull = true };
        }

        // A lone sender commits on its own thread: SendAsync then costs one commit, as a raw insert does.
        _database.InlineLoneWrites = true;

        // Concurrent senders each wait for their own commit and send again: gathered, they share one commit, not two.
        _database.GatherWrites = true;
    }

    public string Path => _database.Path;

    /// <summary>Changes whenever anything commits to the outbox, from this process or another (<see cref="SqliteDatabase.ChangeVersion"/>).</summary>
    public long ChangeVersion() => _database.ChangeVersion();

    /// <summary>Commits and writes so far (how well sends were grouped).</summary>
    public (long Commits, long Writes) CommitStatistics => (_database.Commits, _database.WritesCommitted);

    /// <summary>Writes waiting for the writer.</summary>
    public int QueuedWrites => _database.QueuedWrites;

    /// <summary>Stores one message, making room or refusing per the limits, in the next group commit.</summary>
    public Task<int> InsertAsync(OutboxInsert message, OutboxLimits limits, CancellationToken cancellationToken) =>
        // No savepoint needed under Reject: a refusal throws before anything changes, and an insert cannot fail halfway.
        // Dropping to make room can still end in a refusal (only transfers being copied left), so it gets one.
        _database.WriteAsync(context => Insert(context, message, limits), isolated: limits.Overflow == OutboxOverflowPolicy.DropOldest, cancellationToken);

    /// <summary>
    /// The stats row, read once per batch and written back once just before the commit, so every operation of a batch
    /// sees the others' changes and the row is not rewritten per message.
    /// </summary>
    private static BatchStats Stats(SqliteWriteContext context)
    {
        if (context.BatchItems.TryGetValue(nameof(BatchStats), out var cached))
        {
            return (BatchStats)cached;
        }

        var read = context.Prepared("SELECT depth, bytes, dropped, quarantined FROM stats WHERE id = 1", _ => { });
        BatchStats stats;
        using (var reader = read.ExecuteReader())
        {
            reader.Read();
            stats = new BatchStats { Depth = reader.GetInt64(0), Bytes = reader.GetInt64(1), Dropped = reader.GetInt64(2), Quarantined = reader.GetInt64(3) };
        }

        context.BatchItems[nameof(BatchStats)] = stats;
        context.BeforeCommit(nameof(BatchStats), c =>
        {
            var write = c.Prepared("UPDATE stats SET depth = $depth, bytes = $bytes, dropped = $dropped, quarantined = $quarantined WHERE id = 1", p =>
            {
                p.Add("$depth", SqliteType.Integer);
                p.Add("$bytes", SqliteType.Integer);
                p.Add("$dropped", SqliteType.Integer);
                p.Add("$quarantined", SqliteType.Integer);
            });
            write.Parameters["$depth"].Value = Math.Max(0, stats.Depth);
            write.Parameters["$bytes"].Value = Math.Max(0, stats.Bytes);
            write.Parameters["$dropped"].Value = stats.Dropped;
            write.Parameters["$quarantined"].Value = stats.Quarantined;
            write.ExecuteNonQuery();
        });
        return stats;
    }

    private static int Insert(SqliteWriteContext context, OutboxInsert message, OutboxLimits limits)
    {
        var size = message.Payload.Length;
        var stats = Stats(context);
        var dropped = MakeRoom(context, stats, 1, size, limits, "message");
        var insert = context.Prepared(
            $"""
            INSERT INTO messages (message_id, device_id, stream, created_at, content_type, content_encoding, properties, payload, size, schema_version)
            VALUES ($id, $device, $stream, $created, $type, $encoding, $properties, $payload, $size, {OutboxCodec.SchemaVersion})
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
            });
        insert.Parameters["$id"].Value = message.MessageId;
        insert.Parameters["$device"].Value = (object?)message.DeviceId ?? DBNull.Value;
        insert.Parameters["$stream"].Value = message.Stream;
        insert.Parameters["$created"].Value = message.CreatedAt.ToUnixTimeMilliseconds();
        insert.Parameters["$type"].Value = (object?)message.ContentType ?? DBNull.Value;
        insert.Parameters["$encoding"].Value = (object?)message.ContentEncoding ?? DBNull.Value;
        insert.Parameters["$properties"].Value = (object?)message.PropertiesJson ?? DBNull.Value;
        insert.Parameters["$payload"].Value = message.Payload;
        insert.Parameters["$size"].Value = size;
        insert.ExecuteNonQuery();
        stats.Depth++;
        stats.Bytes += size;
        return dropped;
    }

    /// <summary>
    /// Rows after <paramref name="afterSequence"/>, in order, at most <paramref name="limit"/> of them and no more payload
    /// bytes than <paramref name="maxBytes"/> (the row that crosses it is the last; at least one row): a batch of large
    /// chunks never pulls more than that into memory. Chunk rows come with their transfer, and only once the transfer is
    /// ready (a file still being copied is skipped).
    /// </summary>
    public List<OutboxRow> ReadAfter(long afterSequence, int limit, long maxBytes = long.MaxValue)
    {
        using var connection = _database.OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT {Columns}, m.transfer_id, m.chunk_index, t.kind, t.name, t.size, t.chunk_size, t.chunk_count, t.sha256
            FROM messages m LEFT JOIN transfers t ON t.transfer_id = m.transfer_id
            WHERE m.seq > $after AND (m.transfer_id IS NULL OR t.state IS NULL OR t.state = '{TransferReady}')
            ORDER BY m.seq LIMIT $limit
            """;
        command.Parameters.AddWithValue("$after", afterSequence);
        command.Parameters.AddWithValue("$limit", limit);
        using var reader = command.ExecuteReader();
        var rows = new List<OutboxRow>();
        long bytes = 0;
        while (bytes < maxBytes && reader.Read())
        {
            rows.Add(new OutboxRow(
                reader.GetInt64(0),
                reader.IsDBNull(1) ? null : reader.GetString(1),
                reader.IsDBNull(2) ? null : reader.GetString(2),
                reader.IsDBNull(3) ? null : reader.GetString(3),
                reader.IsDBNull(4) ? 0 : reader.GetInt64(4),
                reader.IsDBNull(5) ? null : reader.GetString(5),
                reader.IsDBNull(6) ? null : reader.GetString(6),
                reader.IsDBNull(7) ? null : reader.GetString(7),
                reader.IsDBNull(8) ? [] : (byte[])reader.GetValue(8),
                reader.IsDBNull(9) ? -1 : reader.GetInt64(9),
                reader.IsDBNull(10) ? -1 : reader.GetInt64(10),
                reader.IsDBNull(11) ? null : new OutboxRowTransfer(
                    reader.GetString(11),
                    reader.IsDBNull(12) ? -1 : reader.GetInt64(12),
                    reader.IsDBNull(13) ? null : reader.GetString(13),
                    reader.IsDBNull(14) ? null : reader.GetString(14),
                    reader.IsDBNull(15) ? null : reader.GetInt64(15),
                    reader.IsDBNull(16) ? null : reader.GetInt64(16),
                    reader.IsDBNull(17) ? null : reader.GetInt64(17),
                    reader.IsDBNull(18) ? null : reader.GetString(18))));
            bytes += rows[^1].Payload.Length;
        }

        return rows;
    }

    /// <summary>
    /// Deletes acknowledged rows and adds them and <paramref name="published"/> (publishes since the last call) to the
    /// lifetime delivery counts; reclaims file space once the outbox is empty.
    /// </summary>
    public async Task DeleteAsync(IReadOnlyCollection<long> sequences, long published, CancellationToken cancellationToken)
    {
        if (sequences.Count == 0 && published == 0)
        {
            return;
        }

        var empty = await _database.WriteAsync(
            context =>
            {
                var stats = Stats(context);
                var delete = context.Prepared("DELETE FROM messages WHERE seq = $seq RETURNING size, transfer_id", p => p.Add("$seq", SqliteType.Integer));
                var deleted = 0;
                Dictionary<string, int>? chunks = null;
                foreach (var sequence in sequences)
                {
                    delete.Parameters["$seq"].Value = sequence;
                    using var reader = delete.ExecuteReader();
                    if (reader.Read())
                    {
                        stats.Bytes -= reader.GetInt64(0);
                        stats.Depth--;
                        deleted++;
                        if (!reader.IsDBNull(1))
                        {
                            chunks ??= new(StringComparer.Ordinal);
                            chunks[reader.GetString(1)] = chunks.GetValueOrDefault(reader.GetString(1)) + 1;
                        }
                    }
                }

                if (chunks is not null)
                {
                    ChunksAcknowledged(context, chunks, _timeProvider.GetUtcNow());
                }

                var count = context.Prepared("UPDATE delivery SET sent = sent + $sent, acknowledged = acknowledged + $acknowledged WHERE id = 1", p =>
                {
                    p.Add("$sent", SqliteType.Integer);
                    p.Add("$acknowledged", SqliteType.Integer);
                });
                count.Parameters["$sent"].Value = published;
                count.Parameters["$acknowledged"].Value = deleted;
                count.ExecuteNonQuery();
                return sequences.Count > 0 && stats.Depth <= 0;
            },
            isolated: false,
            cancellationToken).ConfigureAwait(false);

        if (empty)
        {
            await ReclaimAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Gives the space of drained rows back to the file system: a truncating WAL checkpoint and, when the outbox is empty
    /// (so rewriting it costs nothing), a VACUUM. Skipped quietly when another process is writing at that moment.
    /// </summary>
    public Task ReclaimAsync() => _database.MaintainAsync(connection =>
    {
        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT depth FROM stats WHERE id = 1";
            if (command.ExecuteScalar() is 0L)
            {
                command.CommandText = "VACUUM";
                command.ExecuteNonQuery();
            }

            command.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
            command.ExecuteNonQuery();
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 5 or 6)
        {
            // SQLITE_BUSY / SQLITE_LOCKED: someone else is writing; the next drain tries again.
        }
    });

    /// <summary>
    /// Moves a row that cannot be sent (undecodable, refused for good by the broker, too large) to the quarantine table
    /// with the reason, so the rows behind it still go out.
    /// </summary>
    public Task QuarantineAsync(OutboxRow row, string reason, DateTimeOffset now, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context =>
            {
                context.Execute(
                    "INSERT OR REPLACE INTO quarantine (seq, message_id, stream, reason, quarantined_at, payload) VALUES ($seq, $id, $stream, $reason, $now, $payload)",
                    ("$seq", row.Sequence),
                    ("$id", row.MessageId),
                    ("$stream", row.Stream),
                    ("$reason", reason),
                    ("$now", now.ToUnixTimeMilliseconds()),
                    ("$payload", row.Payload));
                var removed = context.Execute("DELETE FROM messages WHERE seq = $seq", ("$seq", row.Sequence));
                var stats = Stats(context);
                stats.Depth -= removed;
                stats.Bytes -= removed * Math.Max(0, row.Size);
                stats.Quarantined++;
            },
            cancellationToken);

    /// <summary>
    /// Caps the file at its current size (<c>PRAGMA max_page_count</c> on the writer connection), so a write that needs
    /// a new page fails with SQLITE_FULL as on a full disk; false lifts the cap. For tests where no small file system can
    /// be mounted.
    /// </summary>
    internal Task CapFileSizeAsync(bool capped) => _database.MaintainAsync(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = capped ? "PRAGMA max_page_count = 1" : "PRAGMA max_page_count = 4294967294";
        command.ExecuteNonQuery();
    });

    /// <summary>Depth, bytes, the oldest message's age and the lifetime counts.</summary>
    public OutboxStatistics ReadStatistics(DateTimeOffset now)
    {
        using var connection = _database.OpenRead();
        return ReadStatistics(connection, now)!;
    }

    /// <summary>Runs <see cref="StatisticsQuery"/> on <paramref name="connection"/>; null when the file holds no outbox yet.</summary>
    internal static OutboxStatistics? ReadStatistics(SqliteConnection connection, DateTimeOffset now)
    {
        using var command = connection.CreateCommand();
        command.CommandText = StatisticsQuery;
        SqliteDataReader reader;
        try
        {
            reader = command.ExecuteReader();
        }
        catch (SqliteException ex) when (ex.Message.Contains("no such table: delivery", StringComparison.Ordinal))
        {
            // An outbox last opened by a version without delivery counts (read-only here, so it cannot be upgraded).
            command.CommandText = StatisticsQueryWithoutDelivery;
            reader = command.ExecuteReader();
        }

        OutboxStatistics statistics;
        using (reader)
        {
            if (!reader.Read())
            {
                return null;
            }

            statistics = new OutboxStatistics
            {
            Depth = reader.GetInt64(0),
            Bytes = reader.GetInt64(1),
            Dropped = reader.GetInt64(2),
            Quarantined = reader.GetInt64(3),
            Sent = reader.GetInt64(4),
            Acknowledged = reader.GetInt64(5),
            OldestAge = reader.IsDBNull(6) ? null : now - DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)),
            };
        }

        var (underWay, abandoned) = ReadTransferStatistics(connection);
        return statistics with { Transfers = underWay, AbandonedTransfers = abandoned };
    }

    public ValueTask DisposeAsync() => _database.DisposeAsync();
}

/// <summary>The stats row while a batch changes it.</summary>
internal sealed class BatchStats
{
    public long Depth { get; set; }

    public long Bytes { get; set; }

    public long Dropped { get; set; }

    public long Quarantined { get; set; }
}

/// <summary>A message on its way into the store.</summary>
internal sealed record OutboxInsert(string MessageId, string? DeviceId, string Stream, DateTimeOffset CreatedAt, string? ContentType, string? ContentEncoding, string? PropertiesJson, byte[] Payload);

/// <summary>The outbox's limits and overflow policy.</summary>
internal sealed record OutboxLimits(long MaxMessages, long MaxBytes, OutboxOverflowPolicy Overflow);
