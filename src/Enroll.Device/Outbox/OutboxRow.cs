namespace Enroll.Device.Outbox;

/// <summary>One stored row, exactly as read (not yet validated).</summary>
internal sealed record OutboxRow(
    long Sequence,
    string? MessageId,
    string? DeviceId,
    string? Stream,
    long CreatedAt,
    string? ContentType,
    string? ContentEncoding,
    string? PropertiesJson,
    byte[] Payload,
    long Size,
    long SchemaVersion,
    OutboxRowTransfer? Transfer = null);

/// <summary>
/// What a chunk row knows of its transfer, read with it (the <c>transfers</c> row joined in): null fields when the
/// transfer row is missing, so decoding can refuse it.
/// </summary>
internal sealed record OutboxRowTransfer(
    string TransferId,
    long ChunkIndex,
    string? Kind,
    string? Name,
    long? Size,
    long? ChunkSize,
    long? ChunkCount,
    string? Sha256);

/// <summary>A stored message that decoded cleanly and can be published.</summary>
internal sealed record OutboxMessage(
    long Sequence,
    string MessageId,
    string? DeviceId,
    string Stream,
    DateTimeOffset CreatedAt,
    string? ContentType,
    string? ContentEncoding,
    IReadOnlyDictionary<string, string> Properties,
    ReadOnlyMemory<byte> Payload,
    OutboxChunk? Chunk = null);

/// <summary>A decoded chunk: which transfer, which piece, and the transfer's shape and hash (its MQTT user properties).</summary>
internal sealed record OutboxChunk(string TransferId, string Kind, string? Name, int Index, int Count, int ChunkSize, long Size, string Sha256)
{
    public bool IsFile => Kind == Protocol.Transfers.TransferKinds.File;
}
