using System.Collections.Concurrent;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace Enroll.Testing;

/// <summary>
/// A plain MQTTnet broker with none of Enroll's handlers, on a free loopback port: it accepts every client, counts
/// connections and publishes by topic, answers no request (a server that is silent), and can answer every device data
/// message with a chosen PUBACK reason code (a server that cannot store messages right now).
/// </summary>
public sealed class StandInBroker : IAsyncDisposable
{
    private readonly MqttServer _server;
    private readonly ConcurrentDictionary<string, int> _publishes = new(StringComparer.Ordinal);
    private int _connections;
    private int _subscriptions;

    private StandInBroker(MqttServer server, int port)
    {
        _server = server;
        Port = port;
        _server.ValidatingConnectionAsync += _ =>
        {
            Interlocked.Increment(ref _connections);
            return Task.CompletedTask;
        };
        _server.InterceptingSubscriptionAsync += _ =>
        {
            Interlocked.Increment(ref _subscriptions);
            return Task.CompletedTask;
        };
        _server.InterceptingPublishAsync += e =>
        {
            if (e.ClientId is null)
            {
                return Task.CompletedTask;
            }

            _publishes.AddOrUpdate(e.ApplicationMessage.Topic, 1, (_, n) => n + 1);
            if (RefuseDataWith is { } code && e.ApplicationMessage.Topic.Contains("/messages/", StringComparison.Ordinal))
            {
                e.ProcessPublish = false;
                e.Response.ReasonCode = code;
            }

            return Task.CompletedTask;
        };
    }

    public int Port { get; }

    public Uri Endpoint => new($"mqtt://127.0.0.1:{Port}");

    /// <summary>When set, every device data message (…/messages/…) is answered with this PUBACK reason code and dropped.</summary>
    public MqttPubAckReasonCode? RefuseDataWith { get; set; }

    /// <summary>CONNECT packets received so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Topic filters clients subscribed to so far (a device subscribes before it sends a request).</summary>
    public int Subscriptions => Volatile.Read(ref _subscriptions);

    /// <summary>PUBLISH packets received so far on topics matching <paramref name="predicate"/>.</summary>
    public int Publishes(Func<string, bool> predicate) => _publishes.Where(p => predicate(p.Key)).Sum(p => p.Value);

    public static async Task<StandInBroker> StartAsync()
    {
        var port = FreePort();
        var options = new MqttServerOptionsBuilder().WithDefaultEndpoint().WithDefaultEndpointBoundIPAddress(System.Net.IPAddress.Loopback).WithDefaultEndpointPort(port).Build();
        var server = new MqttServerFactory().CreateMqttServer(options);
        var broker = new StandInBroker(server, port);
        await server.StartAsync();
        return broker;
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        await _server.StopAsync();
        _server.Dispose();
    }
}
