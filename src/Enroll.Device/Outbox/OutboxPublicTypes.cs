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

    /// <summary>Delete the oldest stored messages to make room (counted as dropped).</summary>
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
    /// <summary>Messages stored and not yet acknowledged by the broker.</summary>
    public long Depth { get; init; }

    /// <summary>Bytes of those messages' payloads (as stored, compressed where it helped).</summary>
    public long Bytes { get; init; }

    /// <summary>Age of the oldest stored message.</summary>
    public TimeSpan? OldestAge { get; init; }

    /// <summary>Publishes, ever (a message resent after a reconnect counts again); saved with each batch of acknowledgements.</summary>
    public long Sent { get; init; }

    /// <summary>Messages acknowledged by the broker and deleted, ever.</summary>
    public long Acknowledged { get; init; }

    /// <summary>Messages dropped by <see cref="OutboxOverflowPolicy.DropOldest"/>, ever.</summary>
    public long Dropped { get; init; }

    /// <summary>
    /// Rows moved to the quarantine table of <c>outbox.db</c>, ever: undecodable, refused for good by the broker, or too
    /// large for its packet limit (the table keeps each one's reason and payload).
    /// </summary>
    public long Quarantined { get; init; }
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
