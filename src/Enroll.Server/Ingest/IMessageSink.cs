namespace Enroll.Server;

/// <summary>A device message as the server received it (payload already decompressed).</summary>
public sealed record IngestedMessage
{
    /// <summary>The device that sent it.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The device's message ID (unique per device; resends carry the same one).</summary>
    public required string MessageId { get; init; }

    /// <summary>The stream (topic suffix after <c>messages/</c>).</summary>
    public required string Stream { get; init; }

    /// <summary>When the device stored it.</summary>
    public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>When the server received it.</summary>
    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary>The payload's MIME type, when the device gave one.</summary>
    public string? ContentType { get; init; }

    /// <summary>Custom properties the device attached.</summary>
    public IReadOnlyDictionary<string, string> Properties { get; init; } = new Dictionary<string, string>();

    /// <summary>The payload.</summary>
    public required ReadOnlyMemory<byte> Payload { get; init; }
}

/// <summary>
/// Where ingested device messages go. The registry sink stores each message once (de-duplicated on Device ID and
/// message ID); register more sinks (with <see cref="EnrollServerBuilder.Services"/> in <see cref="EnrollServerHost.StartAsync(EnrollServerOptions, Action{EnrollServerBuilder}, CancellationToken)"/>) to forward messages
/// elsewhere — they see each message once, after it was stored, and the device's acknowledgement waits for them.
/// </summary>
public interface IMessageSink
{
    /// <summary>Takes a message that was just stored for the first time.</summary>
    Task AcceptAsync(IngestedMessage message, CancellationToken cancellationToken);
}
