using System.Buffers;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Server.Broker;

/// <summary>A message the server publishes (an answer, a status push, the key set), the same on either transport.</summary>
internal static class ServerMessage
{
    /// <summary>A QoS 1 message on <paramref name="topic"/>; retained for the key set, never for answers.</summary>
    public static MqttApplicationMessage Create(string topic, byte[] payload, byte[]? correlationData, bool retain, string contentType) => new()
    {
        Topic = topic,
        Payload = new ReadOnlySequence<byte>(payload),
        CorrelationData = correlationData,
        QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce,
        ContentType = contentType,
        Retain = retain,
    };
}
