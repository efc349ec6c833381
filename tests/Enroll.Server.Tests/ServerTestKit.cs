using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Enroll.Server.Broker;
using Enroll.Server.Diagnostics;
using Enroll.Server.Handlers;
using Enroll.Server.Tokens;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using MQTTnet.Packets;

namespace Enroll.Server.Tests;

/// <summary>Ways into a running test server that several test classes share.</summary>
internal static class ServerTestKit
{
    /// <summary>A dispatcher over the server's real handlers and registry whose answers go to <paramref name="publisher"/>.</summary>
    public static RequestDispatcher Dispatcher(TestServer server, IResponsePublisher publisher, TimeProvider? timeProvider = null)
    {
        var services = server.Host.Services;
        return new RequestDispatcher(
            services.GetServices<RequestRoute>(),
            services.GetRequiredService<RequestQueue>(),
            services.GetRequiredService<EncryptionKeyRing>(),
            publisher,
            services.GetRequiredService<IOptions<EnrollServerOptions>>(),
            services.GetRequiredService<ServerMetrics>(),
            NullLogger<RequestDispatcher>.Instance,
            timeProvider);
    }

    /// <summary>Every packet <paramref name="clientId"/> sends to the embedded broker, from now on.</summary>
    public static ConcurrentQueue<MqttPacket> CaptureInbound(TestServer server, string clientId)
    {
        var packets = new ConcurrentQueue<MqttPacket>();
        server.Host.Services.GetRequiredService<EmbeddedBroker>().Server.InterceptingInboundPacketAsync += e =>
        {
            if (e.ClientId == clientId)
            {
                packets.Enqueue(e.Packet);
            }

            return Task.CompletedTask;
        };
        return packets;
    }
}

/// <summary>Answers a dispatcher would publish, kept instead.</summary>
internal sealed class CapturingPublisher : IResponsePublisher
{
    public ConcurrentQueue<byte[]> Answers { get; } = new();

    public Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json")
    {
        Answers.Enqueue(payload);
        return Task.CompletedTask;
    }
}

/// <summary>The <c>enroll.server.requests.rejected</c> counter of one server, by reason, from creation on.</summary>
internal sealed class RejectedRequests : IDisposable
{
    private readonly ConcurrentDictionary<string, long> _byReason = new(StringComparer.Ordinal);
    private readonly MeterListener _listener = new();

    public RejectedRequests(TestServer server)
    {
        var meterFactory = server.Host.Services.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Scope == meterFactory && instrument.Name == ServerInstruments.RequestsRejected)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "reason" && tag.Value is string reason)
                {
                    _byReason.AddOrUpdate(reason, value, (_, total) => total + value);
                }
            }
        });
        _listener.Start();
    }

    public long this[string reason] => _byReason.GetValueOrDefault(reason);

    public void Dispose() => _listener.Dispose();
}
