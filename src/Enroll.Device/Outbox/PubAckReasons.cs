namespace Enroll.Device.Outbox;

/// <summary>
/// What a failed PUBACK means for the message it answers (MQTT 5 §3.4.2.1). Permanent: sending the same message again
/// can only get the same answer, so the publisher moves it to quarantine and the rows behind it go on. Everything else
/// — including codes this table does not know — is transient: the message stays first in line and is sent again after
/// a jittered exponential backoff, so no message is ever given up on a code nobody decided about.
/// </summary>
internal static class PubAckReasons
{
    /// <summary>True for the reason codes that refuse this message for good.</summary>
    public static bool IsPermanent(int reasonCode) => reasonCode is
        0x83 // Implementation specific error: the receiver is not willing to accept this PUBLISH
        or 0x87 // Not authorized: this device may not publish this message on this topic
        or 0x90 // Topic Name invalid
        or 0x95 // Packet too large
        or 0x99; // Payload format invalid (the Enroll server: undecodable gzip, bad properties, payload over 1 MiB)

    /// <summary>
    /// True for the reason codes that refuse a chunk of a transfer for good: those above, and 0x97 Quota exceeded, which
    /// the Enroll server answers when a file would pass the device's file quota (design of issue 14: a refused transfer
    /// gets the same answer for every chunk, so resending cannot help). For ordinary messages 0x97 stays transient.
    /// </summary>
    public static bool IsPermanentForChunk(int reasonCode) => IsPermanent(reasonCode) || reasonCode == 0x97;

    // Transient: 0x80 Unspecified error (the Enroll server when it cannot store the message, e.g. its disk is full),
    // 0x91 Packet Identifier in use, 0x97 Quota exceeded, 0x89-like busy codes, and any code not listed above.
}
