using Enroll.Server.Broker;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace Enroll.Testing;

/// <summary>
/// Faults injected into a test server's real broker on the wire: PUBACKs answered with a failure reason code (what the
/// server sends when it cannot store a message), a Maximum Packet Size announced in CONNACK, and counts of CONNACKs and
/// publishes. Outbound packets are changed after the broker's own handlers ran.
/// </summary>
public sealed class BrokerFaults
{
    private volatile int _refuseWith;
    private int _connects;

    public BrokerFaults(TestServer server)
    {
        ArgumentNullException.ThrowIfNull(server);
        var broker = server.Host.Services.GetRequiredService<EmbeddedBroker>();
        broker.Server.InterceptingOutboundPacketAsync += e =>
        {
            switch (e.Packet)
            {
                case MqttConnAckPacket connack:
                    Interlocked.Increment(ref _connects);
                    if (MaximumPacketSize is { } max)
                    {
                        connack.MaximumPacketSize = max;
                    }

                    break;
                case MqttPubAckPacket ack when _refuseWith != 0 && e.ClientId != BrokerSession.ServerClientId:
                    ack.ReasonCode = (MqttPubAckReasonCode)_refuseWith;
                    ack.ReasonString = "injected by the test";
                    break;
            }

            return Task.CompletedTask;
        };
    }

    /// <summary>The Maximum Packet Size every CONNACK announces from now on; null announces none.</summary>
    public uint? MaximumPacketSize { get; set; }

    /// <summary>CONNACKs sent so far.</summary>
    public int Connects => Volatile.Read(ref _connects);

    /// <summary>Answers every PUBACK with <paramref name="reasonCode"/> (for example 0x80) until <see cref="StopRefusing"/>.</summary>
    public void RefusePubAcks(int reasonCode) => _refuseWith = reasonCode;

    public void StopRefusing() => _refuseWith = 0;
}
