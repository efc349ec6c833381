using System.Collections.Concurrent;
using Enroll.Server.Broker;
using System.Buffers;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace Enroll.Testing;

/// <summary>
/// Every PUBLISH the clients of a test server's real broker send (not the server's own), as it arrived: topic, payload,
/// content type and user properties. For tests that count and inspect what went over the wire (chunks of a transfer).
/// </summary>
public sealed class PublishRecorder
{
    private readonly ConcurrentQueue<RecordedPublish> _seen = new();
    private readonly TestServer _server;

    public PublishRecorder(TestServer server)
    {
        ArgumentNullException.ThrowIfNull(server);
        _server = server;
        var broker = server.Host.Services.GetRequiredService<EmbeddedBroker>();
        broker.Server.InterceptingPublishAsync += e =>
        {
            if (e.ClientId != BrokerSession.ServerClientId)
            {
                var message = e.ApplicationMessage;
                var properties = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var property in message.UserProperties ?? [])
                {
                    properties[property.Name] = property.ReadValueAsString();
                }

                _seen.Enqueue(new RecordedPublish(e.ClientId, message.Topic, message.Payload.ToArray(), message.ContentType, properties));
            }

            return Task.CompletedTask;
        };
    }

    /// <summary>The publishes seen on <paramref name="topic"/>, in arrival order.</summary>
    public IReadOnlyList<RecordedPublish> On(string topic) => _seen.Where(s => s.Topic == topic).ToList();

    /// <summary>Drops the connection of <paramref name="clientId"/> at the broker, as a network reset would.</summary>
    public Task DisconnectAsync(string clientId) =>
        MQTTnet.Server.MqttServerExtensions.DisconnectClientAsync(_server.Host.Services.GetRequiredService<EmbeddedBroker>().Server, clientId, MqttDisconnectReasonCode.UnspecifiedError);
}

/// <summary>One PUBLISH as the broker received it.</summary>
public sealed record RecordedPublish(string ClientId, string Topic, byte[] Payload, string? ContentType, IReadOnlyDictionary<string, string> Properties);
