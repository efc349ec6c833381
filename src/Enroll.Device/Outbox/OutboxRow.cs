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
    long SchemaVersion);

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
    ReadOnlyMemory<byte> Payload);
