using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Enroll.Device.State;
using Enroll.Protocol;
using Enroll.Protocol.Transfers;

namespace Enroll.Device.Outbox;

/// <summary>
/// How a message is stored: schema version 1, payload gzip-compressed when that helps above a threshold, properties as
/// a JSON object. Decoding checks every column, so a damaged row is recognised (and quarantined) instead of breaking the
/// queue.
/// </summary>
internal static class OutboxCodec
{
    public const int SchemaVersion = 1;
    public const string Gzip = "gzip";

    /// <summary>Compresses <paramref name="payload"/> when it is larger than <paramref name="threshold"/> and gzip makes it smaller.</summary>
    public static (byte[] Stored, string? Encoding) Encode(ReadOnlyMemory<byte> payload, int threshold)
    {
        if (threshold > 0 && payload.Length > threshold)
        {
            using var buffer = new MemoryStream();
            using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
            {
                gzip.Write(payload.Span);
            }

            if (buffer.Length < payload.Length)
            {
                return (buffer.ToArray(), Gzip);
            }
        }

        return (payload.ToArray(), null);
    }

    public static string? EncodeProperties(IReadOnlyDictionary<string, string>? properties) =>
        properties is null || properties.Count == 0
            ? null
            : JsonSerializer.Serialize(new Dictionary<string, string>(properties, StringComparer.Ordinal), OutboxJsonContext.Default.DictionaryStringString);

    /// <summary>Validates a row; false with a reason for rows that cannot be published as they are.</summary>
    public static bool TryDecode(OutboxRow row, [NotNullWhen(true)] out OutboxMessage? message, [NotNullWhen(false)] out string? reason)
    {
        message = null;
        if (row.SchemaVersion != SchemaVersion)
        {
            reason = $"unknown schema version {row.SchemaVersion}";
            return false;
        }

        if (row.Payload.Length != row.Size)
        {
            reason = $"truncated payload ({row.Payload.Length} of {row.Size} bytes)";
            return false;
        }

        OutboxChunk? chunk = null;
        if (row.Transfer is { } transfer && !TryDecodeChunk(row, transfer, out chunk, out reason))
        {
            return false;
        }

        var isFile = chunk is { IsFile: true };
        if (row.MessageId is not { Length: 26 } || (!isFile && !EnrollIdentifiers.IsValidStream(row.Stream)) || (row.DeviceId is not null && !EnrollIdentifiers.IsValid(row.DeviceId)))
        {
            reason = "invalid message ID, stream or Device ID";
            return false;
        }

        if (row.ContentEncoding is not (null or Gzip))
        {
            reason = $"unknown content encoding '{row.ContentEncoding}'";
            return false;
        }

        IReadOnlyDictionary<string, string> properties = new Dictionary<string, string>();
        if (row.PropertiesJson is not null)
        {
            try
            {
                properties = JsonSerializer.Deserialize(row.PropertiesJson, OutboxJsonContext.Default.DictionaryStringString) ?? properties;
            }
            catch (JsonException)
            {
                reason = "unreadable properties";
                return false;
            }
        }

        message = new OutboxMessage(
            row.Sequence,
            row.MessageId,
            row.DeviceId,
            row.Stream ?? string.Empty,
            DateTimeOffset.FromUnixTimeMilliseconds(row.CreatedAt),
            row.ContentType,
            row.ContentEncoding,
            properties,
            row.Payload,
            chunk);
        reason = null;
        return true;
    }

    /// <summary>Checks a chunk row against its transfer: a shape the server would accept and a payload of the right length.</summary>
    private static bool TryDecodeChunk(OutboxRow row, OutboxRowTransfer transfer, [NotNullWhen(true)] out OutboxChunk? chunk, [NotNullWhen(false)] out string? reason)
    {
        chunk = null;
        if (transfer.Kind is not (TransferKinds.Message or TransferKinds.File) || transfer.Size is not { } size || transfer.ChunkSize is not { } chunkSize
            || transfer.ChunkCount is not { } count || !TransferLimits.IsSha256Hex(transfer.Sha256))
        {
            reason = $"chunk {transfer.ChunkIndex} of transfer {transfer.TransferId}: its transfer is missing or damaged";
            return false;
        }

        if (chunkSize is < TransferLimits.MinChunkBytes or > int.MaxValue || count is < 1 or > TransferLimits.MaxChunkCount
            || TransferLimits.CheckShape(size, (int)chunkSize, (int)count) is not null)
        {
            reason = $"transfer {transfer.TransferId} has an invalid shape (size {size}, chunk size {chunkSize}, {count} chunks)";
            return false;
        }

        if (transfer.ChunkIndex < 0 || transfer.ChunkIndex >= count
            || row.Payload.Length != TransferLimits.ChunkLength(size, (int)chunkSize, (int)count, (int)transfer.ChunkIndex))
        {
            reason = $"chunk {transfer.ChunkIndex} of transfer {transfer.TransferId} has {row.Payload.Length} bytes, not what its transfer's shape says";
            return false;
        }

        if (transfer.Kind == TransferKinds.File && TransferLimits.CheckName(transfer.Name) is { } name)
        {
            reason = $"transfer {transfer.TransferId}: {name}";
            return false;
        }

        chunk = new OutboxChunk(transfer.TransferId, transfer.Kind, transfer.Name, (int)transfer.ChunkIndex, (int)count, (int)chunkSize, size, transfer.Sha256!);
        reason = null;
        return true;
    }

    /// <summary>
    /// The size of the MQTT 5 PUBLISH packet (QoS 1) that carries a message: fixed header, topic, packet identifier,
    /// content type and user properties, payload. The publisher compares it with the broker's Maximum Packet Size.
    /// </summary>
    public static long PublishPacketSize(string topic, string? contentType, IEnumerable<KeyValuePair<string, string>> userProperties, long payloadLength)
    {
        long properties = 0;
        if (contentType is not null)
        {
            properties += 1 + 2 + System.Text.Encoding.UTF8.GetByteCount(contentType);
        }

        foreach (var (name, value) in userProperties)
        {
            properties += 1 + 2 + System.Text.Encoding.UTF8.GetByteCount(name) + 2 + System.Text.Encoding.UTF8.GetByteCount(value);
        }

        var remaining = 2 + System.Text.Encoding.UTF8.GetByteCount(topic) + 2 + VariableIntegerSize(properties) + properties + payloadLength;
        return 1 + VariableIntegerSize(remaining) + remaining;
    }

    /// <summary>
    /// The user properties a chunk carries besides those of its message (<see cref="TransferProperties"/>), in the order
    /// the publisher sends them.
    /// </summary>
    public static void AddChunkProperties(List<KeyValuePair<string, string>> properties, OutboxChunk chunk)
    {
        properties.Add(new(TransferProperties.TransferId, chunk.TransferId));
        properties.Add(new(TransferProperties.ChunkIndex, chunk.Index.ToString(CultureInfo.InvariantCulture)));
        properties.Add(new(TransferProperties.ChunkCount, chunk.Count.ToString(CultureInfo.InvariantCulture)));
        properties.Add(new(TransferProperties.ChunkSize, chunk.ChunkSize.ToString(CultureInfo.InvariantCulture)));
        properties.Add(new(TransferProperties.Size, chunk.Size.ToString(CultureInfo.InvariantCulture)));
        properties.Add(new(TransferProperties.Sha256, chunk.Sha256));
        if (chunk.Name is { } name)
        {
            properties.Add(new(TransferProperties.Name, name));
        }
    }

    /// <summary>
    /// The payload bytes a chunk may carry so that its whole packet fits <paramref name="maximumPacketSize"/> (when the
    /// broker announced one) and the payload <paramref name="chunkBytes"/>: the packet's headers counted at their
    /// longest (chunk index and count up to the protocol's maximum, the size up to 20 digits).
    /// </summary>
    public static long ChunkPayloadLimit(string topic, string? contentType, IEnumerable<KeyValuePair<string, string>> messageProperties, string? name, long? maximumPacketSize, int chunkBytes)
    {
        if (maximumPacketSize is not { } max)
        {
            return chunkBytes;
        }

        var worst = new List<KeyValuePair<string, string>>(messageProperties);
        AddChunkProperties(worst, new OutboxChunk(new string('x', 26), TransferKinds.File, name, TransferLimits.MaxChunkCount, TransferLimits.MaxChunkCount, int.MaxValue, long.MaxValue, new string('0', 64)));
        var headers = PublishPacketSize(topic, contentType, worst, 0);

        // The remaining-length field grows with the payload: count it at its longest (4 bytes) rather than 1.
        return Math.Min(chunkBytes, max - headers - 3);
    }

    private static int VariableIntegerSize(long value) => value switch
    {
        < 128 => 1,
        < 16_384 => 2,
        < 2_097_152 => 3,
        _ => 4,
    };
}
