namespace Enroll.Server.Registry;

/// <summary>
/// The device messages aggregate: messages ingested from devices, each stored once per (Device ID, message ID) and
/// numbered with a sequence that only grows, for reading in order and tailing.
/// </summary>
internal interface IMessageStore
{
    /// <summary>
    /// Stores a device message durably, unless one with the same Device ID and message ID is stored already: true when it
    /// was new, false for a duplicate (whose content is then not compared nor changed). A stored message gets a sequence
    /// greater than every message stored before it; sequences are not necessarily contiguous. When the task completes with
    /// true, the message is committed and may be acknowledged to the device.
    /// </summary>
    Task<bool> StoreMessageAsync(IngestedMessage message, CancellationToken cancellationToken = default);

    /// <summary>
    /// At most <paramref name="limit"/> messages (optionally of one device) with a sequence greater than
    /// <paramref name="afterSequence"/>, oldest first: passing the last sequence of a page gets the next one.
    /// </summary>
    Task<IReadOnlyList<StoredMessage>> ListMessagesAsync(string? deviceId, long afterSequence, int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// The newest <paramref name="limit"/> messages (optionally of one device) with a sequence below
    /// <paramref name="beforeSequence"/> when given, returned oldest first: passing the first sequence of a page gets the
    /// page before it.
    /// </summary>
    Task<IReadOnlyList<StoredMessage>> RecentMessagesAsync(string? deviceId, int limit, long? beforeSequence = null, CancellationToken cancellationToken = default);

    /// <summary>How many messages are stored (optionally of one device).</summary>
    Task<long> CountMessagesAsync(string? deviceId, CancellationToken cancellationToken = default);
}
