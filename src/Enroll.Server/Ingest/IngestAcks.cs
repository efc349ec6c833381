using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Server.Ingest;

/// <summary>
/// The acknowledgement of an ingested publish, the same on both transports (docs/protocol.md §12-13): 0x00 for stored or
/// a duplicate, 0x99 Payload format invalid and 0x97 Quota exceeded for refusals a device must not resend (SPEC §2.4).
/// A passing failure (the disk full, the registry down) is not an <see cref="IngestResult"/> but an exception: 0x80 on
/// the embedded broker, a retried commit on an external one.
/// </summary>
internal static class IngestAcks
{
    public static MqttPubAckReasonCode PubAck(IngestResult result) => result switch
    {
        IngestResult.Invalid => MqttPubAckReasonCode.PayloadFormatInvalid,
        IngestResult.QuotaExceeded => MqttPubAckReasonCode.QuotaExceeded,
        _ => MqttPubAckReasonCode.Success,
    };

    public static MqttApplicationMessageReceivedReasonCode Received(IngestResult result) => result switch
    {
        IngestResult.Invalid => MqttApplicationMessageReceivedReasonCode.PayloadFormatInvalid,
        IngestResult.QuotaExceeded => MqttApplicationMessageReceivedReasonCode.QuotaExceeded,
        _ => MqttApplicationMessageReceivedReasonCode.Success,
    };

    /// <summary>True for a refusal (the reason string goes with it).</summary>
    public static bool IsRefusal(IngestResult result) => result is IngestResult.Invalid or IngestResult.QuotaExceeded;
}
