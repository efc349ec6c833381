using System.Diagnostics.CodeAnalysis;
using System.IO.Compression;
using System.Text.Json;
using Enroll.Device.State;
using Enroll.Protocol;

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

        if (row.MessageId is not { Length: 26 } || !EnrollIdentifiers.IsValidStream(row.Stream) || (row.DeviceId is not null && !EnrollIdentifiers.IsValid(row.DeviceId)))
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
            row.Stream!,
            DateTimeOffset.FromUnixTimeMilliseconds(row.CreatedAt),
            row.ContentType,
            row.ContentEncoding,
            properties,
            row.Payload);
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

    private static int VariableIntegerSize(long value) => value switch
    {
        < 128 => 1,
        < 16_384 => 2,
        < 2_097_152 => 3,
        _ => 4,
    };
}
