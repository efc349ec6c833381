using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Enroll.Protocol.Transfers;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace Enroll.Server.Tests.Files;

/// <summary>Builds the chunk publishes of a transfer as a device sends them (docs/protocol.md §13), for raw MQTT 5 clients.</summary>
internal static class Chunks
{
    public static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static string Sha256(byte[] whole) => Convert.ToHexStringLower(SHA256.HashData(whole));

    /// <summary>The chunks of a file on the device's files topic.</summary>
    public static List<MqttApplicationMessage> OfFile(string deviceId, string transferId, byte[] whole, int chunkSize, string name = "log.txt", string? sha256 = null, string contentType = "text/plain") =>
        Build($"enroll/v1/devices/{deviceId}/files", transferId, whole, chunkSize, sha256, b => b.WithContentType(contentType).WithUserProperty(TransferProperties.Name, Utf8(name)));

    /// <summary>The chunks of one message on a stream's messages topic.</summary>
    public static List<MqttApplicationMessage> OfMessage(string deviceId, string stream, string transferId, string messageId, byte[] whole, int chunkSize, string? encoding = null, string? sha256 = null, IReadOnlyDictionary<string, string>? custom = null) =>
        Build($"enroll/v1/devices/{deviceId}/messages/{stream}", transferId, whole, chunkSize, sha256, b =>
        {
            b.WithContentType("application/json").WithUserProperty("message_id", Utf8(messageId)).WithUserProperty("created_at", Utf8("2026-03-01T12:00:00Z"));
            if (encoding is not null)
            {
                b.WithUserProperty("content_encoding", Utf8(encoding));
            }

            foreach (var (name, value) in custom ?? new Dictionary<string, string>())
            {
                b.WithUserProperty(name, Utf8(value));
            }
        });

    private static List<MqttApplicationMessage> Build(string topic, string transferId, byte[] whole, int chunkSize, string? sha256, Action<MqttApplicationMessageBuilder> extra)
    {
        var count = (int)Math.Max(1, (whole.Length + (long)chunkSize - 1) / chunkSize);
        var hash = sha256 ?? Sha256(whole);
        var chunks = new List<MqttApplicationMessage>();
        for (var i = 0; i < count; i++)
        {
            var length = TransferLimits.ChunkLength(whole.Length, chunkSize, count, i);
            var builder = new MqttApplicationMessageBuilder()
                .WithTopic(topic)
                .WithPayload(whole.AsMemory(i * chunkSize, length).ToArray())
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .WithUserProperty(TransferProperties.TransferId, Utf8(transferId))
                .WithUserProperty(TransferProperties.ChunkIndex, Utf8(i.ToString(CultureInfo.InvariantCulture)))
                .WithUserProperty(TransferProperties.ChunkCount, Utf8(count.ToString(CultureInfo.InvariantCulture)))
                .WithUserProperty(TransferProperties.ChunkSize, Utf8(chunkSize.ToString(CultureInfo.InvariantCulture)))
                .WithUserProperty(TransferProperties.Size, Utf8(whole.Length.ToString(CultureInfo.InvariantCulture)))
                .WithUserProperty(TransferProperties.Sha256, Utf8(hash));
            extra(builder);
            chunks.Add(builder.Build());
        }

        return chunks;
    }

    /// <summary>A copy of <paramref name="chunk"/> with one user property replaced (or removed, with a null value).</summary>
    public static MqttApplicationMessage With(MqttApplicationMessage chunk, string property, string? value, byte[]? payload = null)
    {
        var builder = new MqttApplicationMessageBuilder()
            .WithTopic(chunk.Topic)
            .WithPayload(payload ?? chunk.Payload.ToArray())
            .WithQualityOfServiceLevel(chunk.QualityOfServiceLevel)
            .WithContentType(chunk.ContentType);
        foreach (var p in chunk.UserProperties ?? [])
        {
            if (p.Name != property)
            {
                builder.WithUserProperty(p.Name, Utf8(p.ReadValueAsString()));
            }
        }

        if (value is not null)
        {
            builder.WithUserProperty(property, Utf8(value));
        }

        return builder.Build();
    }

    public static ReadOnlyMemory<byte> Utf8(string value) => Encoding.UTF8.GetBytes(value);
}
