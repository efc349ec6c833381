using System.Collections.Concurrent;
using Enroll.Server.Broker;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Testing;

/// <summary>Counts the messages clients publish to the server's broker, by topic, as they arrive.</summary>
public sealed class RequestCounter
{
    private readonly ConcurrentDictionary<string, int> _counts = new(StringComparer.Ordinal);

    internal RequestCounter(TestServer server)
    {
        var broker = server.Host.Services.GetRequiredService<EmbeddedBroker>();
        broker.Server.InterceptingPublishAsync += e =>
        {
            if (e.ClientId != BrokerSession.ServerClientId)
            {
                _counts.AddOrUpdate(e.ApplicationMessage.Topic, 1, (_, n) => n + 1);
            }

            return Task.CompletedTask;
        };
    }

    public int this[string topic] => _counts.GetValueOrDefault(topic);
}
