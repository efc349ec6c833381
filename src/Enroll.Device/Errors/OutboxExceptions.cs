namespace Enroll.Device;

/// <summary>
/// <see cref="DeviceOutbox.SendAsync"/> refused a message that could never be delivered: after compression it is larger
/// than the configured <see cref="EnrollDeviceOptions.MaxMessageBytes"/>, or the broker's Maximum Packet Size is too small
/// to carry even a chunk of it. Nothing was stored; split the message or make it smaller. (A message that is merely
/// larger than one packet is sent in chunks.)
/// </summary>
public sealed class MessageTooLargeException : EnrollException
{
    /// <summary>Creates the exception for a message of <paramref name="size"/> bytes over <paramref name="limit"/>.</summary>
    public MessageTooLargeException(long size, long limit, string limitName)
        : base($"the message is too large to send: {size:N0} bytes after compression, over {limitName} of {limit:N0} bytes; split it or make it smaller")
    {
        Size = size;
        Limit = limit;
    }

    /// <summary>Creates the exception.</summary>
    public MessageTooLargeException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public MessageTooLargeException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public MessageTooLargeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The message's size in bytes (the stored payload, or the whole MQTT packet for the broker's limit).</summary>
    public long Size { get; }

    /// <summary>The limit it exceeds, in bytes.</summary>
    public long Limit { get; }
}

/// <summary>
/// <see cref="DeviceOutbox.SendFileAsync(string, Stream, string?, CancellationToken)"/> refused a file larger than the
/// configured <see cref="EnrollDeviceOptions.MaxFileBytes"/>: before copying when its length was known, else when the
/// copy reached the limit (what was copied is removed). Nothing of it stays in the outbox.
/// </summary>
public sealed class FileTooLargeException : EnrollException
{
    /// <summary>Creates the exception for a file of (at least) <paramref name="size"/> bytes over <paramref name="limit"/>.</summary>
    public FileTooLargeException(long size, long limit)
        : base($"the file is too large to send: {size:N0} bytes or more, over the maximum file size (MaxFileBytes) of {limit:N0} bytes; nothing of it was stored")
    {
        Size = size;
        Limit = limit;
    }

    /// <summary>Creates the exception.</summary>
    public FileTooLargeException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public FileTooLargeException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public FileTooLargeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The file's size in bytes, or how far the copy got when its length was not known up front.</summary>
    public long Size { get; }

    /// <summary>The limit it exceeds, in bytes.</summary>
    public long Limit { get; }
}

/// <summary>
/// The outbox file could not be written: the disk holding the state folder is full, or another process holds the
/// file's write lock for longer than the busy timeout, or the file cannot be written at all. Messages stored before are
/// intact; <see cref="DeviceOutbox.SendAsync"/> can be tried again once the cause is gone.
/// </summary>
public sealed class OutboxStorageException : EnrollException
{
    /// <summary>Creates the exception.</summary>
    public OutboxStorageException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public OutboxStorageException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public OutboxStorageException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>True when the disk holding the state folder is full (SQLite's <c>SQLITE_FULL</c>).</summary>
    public bool DiskFull { get; init; }

    /// <summary>True when another process held the outbox's write lock for too long (<c>SQLITE_BUSY</c>/<c>SQLITE_LOCKED</c>).</summary>
    public bool Locked { get; init; }
}

/// <summary>
/// The broker answered a QoS 1 publish with a failure reason code (PUBACK ≥ 0x80). Thrown by the connection as the inner
/// exception of an <see cref="EnrollConnectionException"/>, so callers that only know the connection error keep working
/// and the outbox publisher can tell a permanent refusal from a transient one.
/// </summary>
internal sealed class PublishRefusedException : Exception
{
    public PublishRefusedException(int reasonCode, string reasonName, string? reasonString)
        : base($"{reasonName} (0x{reasonCode:X2}){(string.IsNullOrEmpty(reasonString) ? string.Empty : ": " + reasonString)}")
    {
        ReasonCode = reasonCode;
    }

    public PublishRefusedException()
    {
    }

    public PublishRefusedException(string message)
        : base(message)
    {
    }

    public PublishRefusedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The PUBACK reason code.</summary>
    public int ReasonCode { get; }
}
