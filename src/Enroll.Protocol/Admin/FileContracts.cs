using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Admin;

/// <summary>
/// A file a device uploaded, as <c>GET /api/files</c> and <c>GET /api/files/{id}</c> show it; its bytes are at
/// <c>GET /api/files/{id}/content</c>, whose <c>ETag</c> is the quoted <see cref="Sha256"/>.
/// </summary>
public sealed record DeviceFileInfo
{
    /// <summary>The server's ID for the file (<c>file_...</c>).</summary>
    public string? FileId { get; init; }

    public string? DeviceId { get; init; }

    /// <summary>The name the device gave it.</summary>
    public string? Name { get; init; }

    /// <summary>The content type the device gave it; absent when it gave none.</summary>
    public string? ContentType { get; init; }

    /// <summary>Its length in bytes.</summary>
    public long Size { get; init; }

    /// <summary>SHA-256 of the content, lowercase hexadecimal, verified by the server before it stored the file.</summary>
    public string? Sha256 { get; init; }

    /// <summary>When the device stored the file in its outbox, if it said.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>When the server had all of it, verified.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ReceivedAt { get; init; }

    /// <summary>The device's ID of the transfer that carried it.</summary>
    public string? TransferId { get; init; }
}

/// <summary>A transfer under way (a large message or a file the server is receiving), as <c>GET /api/transfers</c> shows it.</summary>
public sealed record TransferInfo
{
    public string? DeviceId { get; init; }

    public string? TransferId { get; init; }

    /// <summary><c>file</c> or <c>message</c> (<see cref="Transfers.TransferKinds"/>).</summary>
    public string? Kind { get; init; }

    /// <summary>The file's name, or the message's stream.</summary>
    public string? Name { get; init; }

    public string? ContentType { get; init; }

    /// <summary>The bytes of the whole.</summary>
    public long Size { get; init; }

    /// <summary>The chunks the server holds, of <see cref="ChunkCount"/>.</summary>
    public int Received { get; init; }

    public int ChunkCount { get; init; }

    /// <summary>Bytes per chunk (the last may be shorter).</summary>
    public int ChunkSize { get; init; }

    /// <summary>When its first chunk arrived.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>When its latest chunk arrived; an incomplete transfer idle longer than the server's transfer expiry is removed.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? UpdatedAt { get; init; }
}

/// <summary>Source-generated JSON for the file routes of the admin API (the conventions of <see cref="AdminJsonContext"/>).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(DeviceFileInfo))]
[JsonSerializable(typeof(ItemList<DeviceFileInfo>))]
[JsonSerializable(typeof(ItemList<TransferInfo>))]
public sealed partial class FileAdminJsonContext : JsonSerializerContext;
