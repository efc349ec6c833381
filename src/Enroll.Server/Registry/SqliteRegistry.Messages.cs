using System.Text.Json;
using Microsoft.Data.Sqlite;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string MessageColumns = "seq, device_id, message_id, stream, created_at, received_at, content_type, properties, payload";

    public Task<bool> StoreMessageAsync(IngestedMessage message, CancellationToken cancellationToken = default) =>
        // One statement, no savepoint: it either stores the row or (a resend, by the UNIQUE (device_id, message_id)
        // constraint) changes nothing. The caller continues off the writer thread, so nothing it does after the commit
        // (acknowledging the device, the message sinks) holds up the next commit.
        _database.WriteAsync(
            context =>
            {
                var insert = context.Prepared(
                    """
                    INSERT OR IGNORE INTO messages (device_id, message_id, stream, created_at, received_at, content_type, properties, payload)
                    VALUES ($device, $id, $stream, $created, $received, $type, $properties, $payload)
                    """,
                    p =>
                    {
                        p.Add("$device", SqliteType.Text);
                        p.Add("$id", SqliteType.Text);
                        p.Add("$stream", SqliteType.Text);
                        p.Add("$created", SqliteType.Integer);
                        p.Add("$received", SqliteType.Integer);
                        p.Add("$type", SqliteType.Text);
                        p.Add("$properties", SqliteType.Text);
                        p.Add("$payload", SqliteType.Blob);
                    });
                insert.Parameters["$device"].Value = message.DeviceId;
                insert.Parameters["$id"].Value = message.MessageId;
                insert.Parameters["$stream"].Value = message.Stream;
                insert.Parameters["$created"].Value = (object?)ToUnix(message.CreatedAt) ?? DBNull.Value;
                insert.Parameters["$received"].Value = ToUnix(message.ReceivedAt);
                insert.Parameters["$type"].Value = (object?)message.ContentType ?? DBNull.Value;
                insert.Parameters["$properties"].Value = message.Properties.Count == 0 ? DBNull.Value : JsonSerializer.Serialize(new Dictionary<string, string>(message.Properties), RegistryJsonContext.Default.DictionaryStringString);
                insert.Parameters["$payload"].Value = message.Payload.ToArray();
                return insert.ExecuteNonQuery() > 0;
            },
            isolated: false,
            cancellationToken);

    public Task<IReadOnlyList<StoredMessage>> ListMessagesAsync(string? deviceId, long afterSequence, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<StoredMessage>>(Query(
            $"SELECT {MessageColumns} FROM messages WHERE ($device IS NULL OR device_id = $device) AND seq > $after ORDER BY seq LIMIT $limit",
            ReadMessage,
            ("$device", deviceId),
            ("$after", afterSequence),
            ("$limit", limit)));

    public Task<IReadOnlyList<StoredMessage>> RecentMessagesAsync(string? deviceId, int limit, long? beforeSequence = null, CancellationToken cancellationToken = default)
    {
        var newest = Query(
            $"SELECT {MessageColumns} FROM messages WHERE ($device IS NULL OR device_id = $device) AND ($before IS NULL OR seq < $before) ORDER BY seq DESC LIMIT $limit",
            ReadMessage,
            ("$device", deviceId),
            ("$before", beforeSequence),
            ("$limit", limit));
        newest.Reverse();
        return Task.FromResult<IReadOnlyList<StoredMessage>>(newest);
    }

    public Task<long> CountMessagesAsync(string? deviceId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query("SELECT COUNT(*) FROM messages WHERE ($device IS NULL OR device_id = $device)", r => r.GetInt64(0), ("$device", deviceId)).Single());
}
