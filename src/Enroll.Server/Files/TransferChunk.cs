using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Transfers;
using Enroll.Server.Registry;
using MQTTnet.Packets;

namespace Enroll.Server.Files;

/// <summary>One chunk of a transfer as it arrived: the transfer it declares (every chunk declares all of it), its index and its bytes.</summary>
internal sealed record TransferChunk(TransferRecord Transfer, int Index, ReadOnlyMemory<byte> Payload)
{
    /// <summary>The longest transfer ID (the identifier rule, at most 64 characters).</summary>
    public const int MaxTransferIdLength = 64;

    /// <summary>Where the chunk's bytes go in the whole.</summary>
    public long Offset => (long)Index * Transfer.ChunkSize;

    /// <summary>True when a publish on a messages topic is a chunk of a message (it carries <c>transfer_id</c>) rather than a whole one.</summary>
    public static bool IsChunk(IReadOnlyList<MqttUserProperty>? userProperties)
    {
        foreach (var property in userProperties ?? [])
        {
            if (property.Name == TransferProperties.TransferId)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Reads a chunk from a publish of <paramref name="deviceId"/>: on its messages topic of <paramref name="stream"/>, or
    /// on its files topic (<paramref name="stream"/> null). The refusal says which property is wrong and how; the payload
    /// is copied (the packet's buffer is not kept). A transfer larger than the server takes (by its kind) is refused at
    /// whichever chunk arrives, before anything is stored.
    /// </summary>
    public static (TransferChunk? Chunk, ChunkRefusal? Refusal) Parse(
        string deviceId,
        string? stream,
        IReadOnlyList<MqttUserProperty>? userProperties,
        string? contentType,
        ReadOnlySequence<byte> payload,
        DateTimeOffset now,
        long maxMessageBytes,
        long maxFileBytes)
    {
        var kind = stream is null ? TransferKinds.File : TransferKinds.Message;
        string? transferId = null, index = null, count = null, chunkSize = null, size = null, sha256 = null, name = null;
        string? messageId = null, createdAt = null, encoding = null;
        Dictionary<string, string>? custom = null;
        foreach (var property in userProperties ?? [])
        {
            var value = property.ReadValueAsString();
            switch (property.Name)
            {
                case TransferProperties.TransferId: transferId = value; break;
                case TransferProperties.ChunkIndex: index = value; break;
                case TransferProperties.ChunkCount: count = value; break;
                case TransferProperties.ChunkSize: chunkSize = value; break;
                case TransferProperties.Size: size = value; break;
                case TransferProperties.Sha256: sha256 = value; break;
                case TransferProperties.Name: name = value; break;
                case "message_id": messageId = value; break;
                case "created_at": createdAt = value; break;
                case "content_encoding": encoding = value; break;
                default:
                    (custom ??= new Dictionary<string, string>(StringComparer.Ordinal))[property.Name] = value;
                    break;
            }
        }

        if (transferId is null || transferId.Length > MaxTransferIdLength || !EnrollIdentifiers.IsValid(transferId))
        {
            return Refuse($"{TransferProperties.TransferId} is required and must be 1-{MaxTransferIdLength} characters of ASCII letters, digits and - _ . : @");
        }

        if (!TryInt(index, out var chunkIndex) || !TryInt(count, out var chunkCount) || !TryInt(chunkSize, out var declaredChunkSize) || !TryLong(size, out var declaredSize))
        {
            return Refuse($"{TransferProperties.ChunkIndex}, {TransferProperties.ChunkCount}, {TransferProperties.ChunkSize} and {TransferProperties.Size} are required, as decimal numbers");
        }

        var max = kind == TransferKinds.File ? maxFileBytes : maxMessageBytes;
        if (declaredSize > max)
        {
            return (null, new ChunkRefusal(ChunkRefusal.TooLarge, string.Create(CultureInfo.InvariantCulture, $"the {kind} is {declaredSize:N0} bytes, more than the server's maximum of {max:N0} bytes")));
        }

        if (!TransferLimits.IsSha256Hex(sha256))
        {
            return Refuse($"{TransferProperties.Sha256} is required: the SHA-256 of the whole, 64 lowercase hexadecimal characters");
        }

        if (TransferLimits.CheckShape(declaredSize, declaredChunkSize, chunkCount) is { } shape)
        {
            return Refuse(shape);
        }

        if (chunkIndex >= chunkCount)
        {
            return Refuse(string.Create(CultureInfo.InvariantCulture, $"{TransferProperties.ChunkIndex} {chunkIndex} is out of range: the transfer has {chunkCount} chunks (0 to {chunkCount - 1})"));
        }

        var expected = TransferLimits.ChunkLength(declaredSize, declaredChunkSize, chunkCount, chunkIndex);
        if (payload.Length != expected)
        {
            return Refuse(string.Create(CultureInfo.InvariantCulture, $"chunk {chunkIndex} must have {expected} bytes (size {declaredSize} in chunks of {declaredChunkSize}), not {payload.Length}"));
        }

        if (kind == TransferKinds.File)
        {
            if (TransferLimits.CheckName(name) is { } badName)
            {
                return Refuse($"{TransferProperties.Name}: {badName}");
            }
        }
        else
        {
            if (messageId is null || messageId.Length is 0 or > 64)
            {
                return Refuse("message_id is required on every chunk of a message and must be 1-64 characters");
            }

            if (encoding is not null and not "gzip")
            {
                return Refuse($"unknown content encoding '{encoding}'");
            }
        }

        var transfer = new TransferRecord
        {
            DeviceId = deviceId,
            TransferId = transferId,
            Kind = kind,
            Name = stream ?? name!,
            ContentType = contentType,
            ContentEncoding = kind == TransferKinds.Message ? encoding : null,
            MessageId = kind == TransferKinds.Message ? messageId : null,
            CreatedAt = DateTimeOffset.TryParse(createdAt, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var created) ? created : null,
            PropertiesJson = kind == TransferKinds.Message && custom is not null ? JsonSerializer.Serialize(custom, RegistryJsonContext.Default.DictionaryStringString) : null,
            Size = declaredSize,
            ChunkSize = declaredChunkSize,
            ChunkCount = chunkCount,
            Sha256 = sha256!,
            StartedAt = now,
            UpdatedAt = now,
        };
        return (new TransferChunk(transfer, chunkIndex, payload.ToArray()), null);

        static (TransferChunk?, ChunkRefusal?) Refuse(string reason) => (null, new ChunkRefusal(ChunkRefusal.Invalid, reason));
    }

    /// <summary>Why the chunk does not belong to <paramref name="transfer"/>, which started under its transfer ID; null when it does.</summary>
    public string? MismatchWith(TransferRecord transfer)
    {
        var declared = Transfer;
        if (declared.Kind != transfer.Kind || declared.Name != transfer.Name || declared.Size != transfer.Size || declared.ChunkSize != transfer.ChunkSize
            || declared.ChunkCount != transfer.ChunkCount || declared.Sha256 != transfer.Sha256 || declared.MessageId != transfer.MessageId)
        {
            return string.Create(
                CultureInfo.InvariantCulture,
                $"{TransferProperties.TransferId} '{transfer.TransferId}' belongs to another transfer ({transfer.Kind} '{transfer.Name}', size {transfer.Size}, chunk_size {transfer.ChunkSize}, sha256 {transfer.Sha256}); use a new transfer ID for a new transfer");
        }

        return null;
    }

    private static bool TryInt(string? text, out int value) => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);

    private static bool TryLong(string? text, out long value) => long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
}

/// <summary>Why a chunk was refused: a kind for the metrics (<see cref="Invalid"/>, ...) and the reason for the device.</summary>
internal sealed record ChunkRefusal(string Kind, string Reason)
{
    /// <summary>Properties missing or malformed, a shape or length that does not add up, a transfer ID reused.</summary>
    public const string Invalid = "invalid";

    /// <summary>Larger than the server takes.</summary>
    public const string TooLarge = "too_large";

    /// <summary>Over the device's file quota (0x97).</summary>
    public const string Quota = "quota";

    /// <summary>The whole does not hash to the declared SHA-256.</summary>
    public const string Hash = "hash";

    /// <summary>The whole is no valid message (a corrupt gzip, too large once decompressed).</summary>
    public const string Content = "content";

    /// <summary>The staged chunks are gone (removed outside the server).</summary>
    public const string Gone = "gone";

    /// <summary>A chunk of a transfer refused before.</summary>
    public const string RefusedBefore = "refused_before";
}
