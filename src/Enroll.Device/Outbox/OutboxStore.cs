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
internal sealed class OutboxStore : IAsyncDisposable
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
            schema_version INTEGER NOT NULL
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
        UPDATE stats SET depth = (SELECT COUNT(*) FROM messages), bytes = (SELECT COALESCE(SUM(size), 0) FROM messages) WHERE id = 1;
        """;

    private const string Columns = "seq, message_id, device_id, stream, created_at, content_type, content_encoding, properties, payload, size, schema_version";

    private readonly SqliteDatabase _database;

    public OutboxStore(string statePath, OutboxDurability durability, TimeProvider timeProvider, ILogger logger)
    {
        _database = StateDatabaseOpener.Open(
            System.IO.Path.Combine(statePath, FileName),
            Schema,
            durability == OutboxDurability.Full ? SqliteDurability.Full : SqliteDurability.Relaxed,
            timeProvider,
            logger);
    }

    public string Path => _database.Path;

    /// <summary>Commits and writes so far (how well sends were grouped).</summary>
    public (long Commits, long Writes) CommitStatistics => (_database.Commits, _database.WritesCommitted);

    /// <summary>Stores one message, making room or refusing per the limits, in the next group commit.</summary>
    public Task<int> InsertAsync(OutboxInsert message, OutboxLimits limits, CancellationToken cancellationToken) =>
        _database.WriteAsync(context => Insert(context, message, limits), cancellationToken);

    private static int Insert(SqliteWriteContext context, OutboxInsert message, OutboxLimits limits)
    {
        var size = message.Payload.Length;
        if (size > limits.MaxBytes)
        {
            throw new OutboxFullException($"the message ({size} bytes) is larger than the whole outbox ({limits.MaxBytes} bytes)");
        }

        long depth, bytes;
        using (var read = context.CreateCommand("SELECT depth, bytes FROM stats WHERE id = 1"))
        using (var reader = read.ExecuteReader())
        {
            reader.Read();
            depth = reader.GetInt64(0);
            bytes = reader.GetInt64(1);
        }

        var dropped = 0;
        if (depth + 1 > limits.MaxMessages || bytes + size > limits.MaxBytes)
        {
            if (limits.Overflow == OutboxOverflowPolicy.Reject)
            {
                throw new OutboxFullException($"the outbox is full ({depth} messages, {bytes} bytes; limits {limits.MaxMessages} messages, {limits.MaxBytes} bytes)");
            }

            while (depth + 1 > limits.MaxMessages || bytes + size > limits.MaxBytes)
            {
                using var drop = context.CreateCommand("DELETE FROM messages WHERE seq = (SELECT MIN(seq) FROM messages) RETURNING size");
                var freed = drop.ExecuteScalar();
                if (freed is null)
                {
                    break;
                }

                depth--;
                bytes -= (long)freed;
                dropped++;
            }
        }

        using (var insert = context.CreateCommand($"""
            INSERT INTO messages (message_id, device_id, stream, created_at, content_type, content_encoding, properties, payload, size, schema_version)
            VALUES ($id, $device, $stream, $created, $type, $encoding, $properties, $payload, $size, {OutboxCodec.SchemaVersion})
            """))
        {
            insert.Parameters.AddWithValue("$id", message.MessageId);
            insert.Parameters.AddWithValue("$device", (object?)message.DeviceId ?? DBNull.Value);
            insert.Parameters.AddWithValue("$stream", message.Stream);
            insert.Parameters.AddWithValue("$created", message.CreatedAt.ToUnixTimeMilliseconds());
            insert.Parameters.AddWithValue("$type", (object?)message.ContentType ?? DBNull.Value);
            insert.Parameters.AddWithValue("$encoding", (object?)message.ContentEncoding ?? DBNull.Value);
            insert.Parameters.AddWithValue("$properties", (object?)message.PropertiesJson ?? DBNull.Value);
            insert.Parameters.AddWithValue("$payload", message.Payload);
            insert.Parameters.AddWithValue("$size", size);
            insert.ExecuteNonQuery();
        }

        context.Execute(
            "UPDATE stats SET depth = $depth + 1, bytes = $bytes + $size, dropped = dropped + $dropped WHERE id = 1",
            ("$depth", depth),
            ("$bytes", bytes),
            ("$size", size),
            ("$dropped", dropped));
        return dropped;
    }

    /// <summary>Rows after <paramref name="afterSequence"/>, in order.</summary>
    public List<OutboxRow> ReadAfter(long afterSequence, int limit)
    {
        using var connection = _database.OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM messages WHERE seq > $after ORDER BY seq LIMIT $limit";
        command.Parameters.AddWithValue("$after", afterSequence);
        command.Parameters.AddWithValue("$limit", limit);
        using var reader = command.ExecuteReader();
        var rows = new List<OutboxRow>();
        while (reader.Read())
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
                reader.IsDBNull(10) ? -1 : reader.GetInt64(10)));
        }

        return rows;
    }

    /// <summary>Deletes acknowledged rows; reclaims file space once the outbox is empty.</summary>
    public async Task DeleteAsync(IReadOnlyCollection<long> sequences, CancellationToken cancellationToken)
    {
        if (sequences.Count == 0)
        {
            return;
        }

        var empty = await _database.WriteAsync(
            context =>
            {
                long freed = 0;
                var deleted = 0;
                using (var delete = context.CreateCommand("DELETE FROM messages WHERE seq = $seq RETURNING size"))
                {
                    var parameter = delete.Parameters.Add("$seq", SqliteType.Integer);
                    foreach (var sequence in sequences)
                    {
                        parameter.Value = sequence;
                        if (delete.ExecuteScalar() is long size)
                        {
                            freed += size;
                            deleted++;
                        }
                    }
                }

                context.Execute("UPDATE stats SET depth = MAX(depth - $n, 0), bytes = MAX(bytes - $freed, 0) WHERE id = 1", ("$n", deleted), ("$freed", freed));
                using var depth = context.CreateCommand("SELECT depth FROM stats WHERE id = 1");
                return (long)depth.ExecuteScalar()! == 0;
            },
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

    /// <summary>Moves a row that cannot be decoded to the quarantine table, so the rows behind it still go out.</summary>
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
                context.Execute(
                    "UPDATE stats SET depth = MAX(depth - $n, 0), bytes = MAX(bytes - $size, 0), quarantined = quarantined + 1 WHERE id = 1",
                    ("$n", removed),
                    ("$size", Math.Max(0, row.Size)));
            },
            cancellationToken);

    /// <summary>Depth, bytes, oldest creation time and the lifetime dropped/quarantined counts.</summary>
    public (long Depth, long Bytes, long? OldestCreatedAt, long Dropped, long Quarantined) ReadStatistics()
    {
        using var connection = _database.OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT depth, bytes, dropped, quarantined, (SELECT created_at FROM messages ORDER BY seq LIMIT 1) FROM stats WHERE id = 1";
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1), reader.IsDBNull(4) ? null : reader.GetInt64(4), reader.GetInt64(2), reader.GetInt64(3));
    }

    public ValueTask DisposeAsync() => _database.DisposeAsync();
}

/// <summary>A message on its way into the store.</summary>
internal sealed record OutboxInsert(string MessageId, string? DeviceId, string Stream, DateTimeOffset CreatedAt, string? ContentType, string? ContentEncoding, string? PropertiesJson, byte[] Payload);

/// <summary>The outbox's limits and overflow policy.</summary>
internal sealed record OutboxLimits(long MaxMessages, long MaxBytes, OutboxOverflowPolicy Overflow);
