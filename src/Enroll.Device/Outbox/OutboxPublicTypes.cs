namespace Enroll.Device;

/// <summary>What a message carries besides its payload.</summary>
public sealed record MessageProperties
{
    /// <summary>The payload's MIME type, for example <c>application/json</c>.</summary>
    public string? ContentType { get; init; }

    /// <summary>Custom properties, passed through to the server as MQTT 5 user properties.</summary>
    public IReadOnlyDictionary<string, string>? Custom { get; init; }
}

/// <summary>What the outbox does when a send would exceed its limits.</summary>
public enum OutboxOverflowPolicy
{
    /// <summary>Refuse the new message: <see cref="DeviceOutbox.SendAsync"/> throws <see cref="OutboxFullException"/>.</summary>
    Reject,

    /// <summary>
    /// Delete the oldest stored messages to make room (counted as dropped); a transfer is dropped whole, never part of
    /// it, and a file still being copied in is never dropped.
    /// </summary>
    DropOldest,
}

/// <summary>How hard the outbox works to keep a message through a power loss.</summary>
public enum OutboxDurability
{
    /// <summary>WAL with <c>synchronous=FULL</c>: a send that returned survives power loss. The default.</summary>
    Full,

    /// <summary>
    /// WAL with <c>synchronous=NORMAL</c>: faster, survives a crash of the process, but a power loss may lose the last
    /// sends that returned. Opt in only when that is acceptable.
    /// </summary>
    Relaxed,
}

/// <summary>A snapshot of the outbox, for <c>enroll device status</c> and metrics.</summary>
public sealed record OutboxStatistics
{
    /// <summary>Rows stored and not yet acknowledged by the broker: one per message, one per chunk of a transfer.</summary>
    public long Depth { get; init; }

    /// <summary>Bytes of those messages' payloads (as stored, compressed where it helped).</summary>
    public long Bytes { get; init; }

    /// <summary>Age of the oldest stored message.</summary>
    public TimeSpan? OldestAge { get; init; }

    /// <summary>Publishes, ever (a message resent after a reconnect counts again); saved with each batch of acknowledgements.</summary>
    public long Sent { get; init; }

    /// <summary>Messages acknowledged by the broker and deleted, ever.</summary>
    public long Acknowledged { get; init; }

    /// <summary>Messages and whole transfers dropped by <see cref="OutboxOverflowPolicy.DropOldest"/>, ever.</summary>
    public long Dropped { get; init; }

    /// <summary>
    /// Rows moved to the quarantine table of <c>outbox.db</c>, ever: undecodable, refused for good by the broker, or too
    /// large for its packet limit (the table keeps each one's reason and payload).
    /// </summary>
    public long Quarantined { get; init; }

    /// <summary>
    /// Transfers under way: files being copied in and messages or files sent in chunks with chunks left (each chunk is a
    /// row, counted in <see cref="Depth"/> and <see cref="Bytes"/>).
    /// </summary>
    public long Transfers { get; init; }

    /// <summary>
    /// Transfers removed when the outbox opened, ever, because the process copying a file into them stopped before the
    /// copy finished (it can never finish; the file must be sent again).
    /// </summary>
    public long AbandonedTransfers { get; init; }
}

/// <summary>The outbox is full and its overflow policy is <see cref="OutboxOverflowPolicy.Reject"/>.</summary>
public sealed class OutboxFullException : EnrollException
{
    /// <summary>Creates the exception.</summary>
    public OutboxFullException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public OutboxFullException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public OutboxFullException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Where one transfer (a file, or a message sent in chunks) stands in the outbox.</summary>
public sealed record OutboxTransfer
{
    /// <summary>The transfer's ID (for a message, its message ID).</summary>
    public required string TransferId { get; init; }

    /// <summary><c>message</c> or <c>file</c>.</summary>
    public required string Kind { get; init; }

    /// <summary>The file's name (files only).</summary>
    public string? Name { get; init; }

    /// <summary>Bytes of the whole (for a file still being copied, 0 or its length when known).</summary>
    public long Size { get; init; }

    /// <summary>How many chunks it has (0 while a file of unknown length is being copied).</summary>
    public int ChunkCount { get; init; }

    /// <summary>Chunks the broker acknowledged (or the server said it holds after a reconnect).</summary>
    public long AcknowledgedChunks { get; init; }

    /// <summary>Chunks still in the outbox.</summary>
    public long ChunksLeft { get; init; }

    /// <summary>Where it stands.</summary>
    public OutboxTransferState State { get; init; }

    /// <summary>Why it failed (<see cref="OutboxTransferState.Failed"/>).</summary>
    public string? Reason { get; init; }
}

/// <summary>The states of a transfer in the outbox.</summary>
public enum OutboxTransferState
{
    /// <summary>A file is being copied in; nothing of it is sent yet.</summary>
    Copying,

    /// <summary>Stored whole; its chunks are being sent.</summary>
    Sending,

    /// <summary>Refused for good (the rest of it moved to quarantine with the reason).</summary>
    Failed,

    /// <summary>Every chunk acknowledged.</summary>
    Delivered,
}
