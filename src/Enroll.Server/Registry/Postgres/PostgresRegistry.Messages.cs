using System.Text.Json;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private const string MessageColumns = "seq, device_id, message_id, stream, created_at, received_at, content_type, properties, payload";

    public async Task<bool> StoreMessageAsync(IngestedMessage message, CancellationToken cancellationToken = default) =>
        // One statement: it stores the row or (a resend, by the unique (device_id, message_id)) changes nothing, also when
        // two instances receive the same resend at once.
        await WriteAsync(
            """
            INSERT INTO messages (device_id, message_id, stream, created_at, received_at, content_type, properties, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (device_id, message_id) DO NOTHING
            """,
            cancellationToken,
            message.DeviceId,
            message.MessageId,
            message.Stream,
            ToUnix(message.CreatedAt),
            ToUnix(message.ReceivedAt),
            message.ContentType,
            message.Properties.Count == 0 ? null : JsonSerializer.Serialize(new Dictionary<string, string>(message.Properties), RegistryJsonContext.Default.DictionaryStringString),
            message.Payload.ToArray()).ConfigureAwait(false) > 0;

    public async Task<IReadOnlyList<StoredMessage>> ListMessagesAsync(string? deviceId, long afterSequence, int limit, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            $"SELECT {MessageColumns} FROM messages WHERE ($1::text IS NULL OR device_id = $1::text) AND seq > $2 ORDER BY seq LIMIT $3",
            ReadMessage,
            cancellationToken,
            deviceId,
            afterSequence,
            limit).ConfigureAwait(false);

    public async Task<IReadOnlyList<StoredMessage>> RecentMessagesAsync(string? deviceId, int limit, long? beforeSequence = null, CancellationToken cancellationToken = default)
    {
        var newest = await ReadAsync(
            $"SELECT {MessageColumns} FROM messages WHERE ($1::text IS NULL OR device_id = $1::text) AND ($2::bigint IS NULL OR seq < $2::bigint) ORDER BY seq DESC LIMIT $3",
            ReadMessage,
            cancellationToken,
            deviceId,
            beforeSequence,
            limit).ConfigureAwait(false);
        newest.Reverse();
        return newest;
    }

    public async Task<long> CountMessagesAsync(string? deviceId, CancellationToken cancellationToken = default) =>
        (await ReadAsync("SELECT COUNT(*) FROM messages WHERE ($1::text IS NULL OR device_id = $1::text)", r => r.GetInt64(0), cancellationToken, deviceId).ConfigureAwait(false)).Single();
}
