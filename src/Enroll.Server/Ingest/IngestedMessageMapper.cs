using System.Buffers;
using Enroll.Protocol;
using MQTTnet.Packets;

namespace Enroll.Server.Ingest;

/// <summary>
/// Turns a device's publish (its topic's stream, user properties, content type and payload) into the
/// <see cref="IngestedMessage"/> <see cref="MessageIngest"/> stores, the same way for both transports: the embedded
/// broker's <c>IngestInterceptor</c> and the external broker's ingest connection.
/// </summary>
internal sealed class IngestedMessageMapper(TimeOrderedId ids, TimeProvider timeProvider)
{
    public (IngestedMessage Message, string? Encoding) Map(string deviceId, string stream, IReadOnlyList<MqttUserProperty>? userProperties, string? contentType, ReadOnlySequence<byte> payload)
    {
        string? messageId = null, createdAt = null, encoding = null;
        var properties = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in userProperties ?? [])
        {
            switch (property.Name)
            {
                case "message_id":
                    messageId = property.ReadValueAsString();
                    break;
                case "created_at":
                    createdAt = property.ReadValueAsString();
                    break;
                case "content_encoding":
                    encoding = property.ReadValueAsString();
                    break;
                default:
                    properties[property.Name] = property.ReadValueAsString();
                    break;
            }
        }

        var message = new IngestedMessage
        {
            DeviceId = deviceId,
            // MQTT 3.1.1 has no user properties: such messages get a server ID and cannot be de-duplicated.
            MessageId = messageId ?? "srv_" + ids.Next(),
            Stream = stream,
            CreatedAt = DateTimeOffset.TryParse(createdAt, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var created) ? created : null,
            ReceivedAt = timeProvider.GetUtcNow(),
            ContentType = contentType,
            Properties = properties,
            Payload = payload.ToArray(),
        };
        return (message, encoding);
    }
}
