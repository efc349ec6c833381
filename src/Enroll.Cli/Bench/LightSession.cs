using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Enroll.Protocol.Topics;

namespace Enroll.Cli.Bench;

/// <summary>
/// A light MQTT 5 session for the largest benchmarks, where a device library instance per device does not fit one load
/// generator: a socket, the packets written by hand. It connects (clean start, anonymous), subscribes to
/// <c>enroll/v1/clients/{id}/#</c> and the server's key set at QoS 1 (taking the retained key set, as a device does),
/// acknowledges every QoS 1 PUBLISH and sends PINGREQ when asked.
/// </summary>
internal sealed class LightSession : IDisposable
{
    public const ushort KeepAliveSeconds = 120;

    private readonly NetworkStream _stream;
    private readonly Lock _writeLock = new();
    private readonly CancellationTokenSource _closed = new();
    private int _lost;

    private LightSession(Socket socket, string clientId)
    {
        _stream = new NetworkStream(socket, ownsSocket: true);
        ClientId = clientId;
    }

    public string ClientId { get; }

    /// <summary>Payload bytes of the retained message(s) delivered on SUBSCRIBE.</summary>
    public int RetainedBytes { get; private set; }

    /// <summary>False once the broker closed the connection (or it broke) while the bench had not.</summary>
    public bool IsOpen => Volatile.Read(ref _lost) == 0;

    public static async Task<LightSession> OpenAsync(Uri broker, IPAddress source, string clientId, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        LightSession? session = null;
        try
        {
            if (OperatingSystem.IsLinux())
            {
                // IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect, for the whole address pair, so sessions to a
                // second broker can reuse the ports the first one's closed sessions still hold in TIME_WAIT.
                socket.SetRawSocketOption(0, 24, BitConverter.GetBytes(1));
            }

            socket.Bind(new IPEndPoint(source, 0));
            await socket.ConnectAsync(broker.Host == "localhost" ? IPAddress.Loopback.ToString() : broker.Host, broker.Port, cancellationToken);
            session = new LightSession(socket, clientId);
            await session.HandshakeAsync(cancellationToken);
            _ = session.ReadLoopAsync();
            return session;
        }
        catch
        {
            if (session is not null)
            {
                session.Dispose();
            }
            else
            {
                socket.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// The source address for session <paramref name="index"/>: a loopback address pair has ~28,000 ephemeral ports, and
    /// a bench that runs against two brokers one after the other needs room for the first one's ports in TIME_WAIT.
    /// </summary>
    public static IPAddress SourceAddress(int index, int perAddress = 10_000) =>
        IPAddress.Parse($"127.0.{1 + (index / perAddress / 254)}.{2 + ((index / perAddress) % 254)}");

    public void Ping() => Write([0xC0, 0x00]);

    public void Dispose()
    {
        _closed.Cancel();
        try
        {
            Write([0xE0, 0x00]); // DISCONNECT, normal
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or SocketException)
        {
        }

        _stream.Dispose();
        _closed.Dispose();
    }

    private async Task HandshakeAsync(CancellationToken cancellationToken)
    {
        var connect = new List<byte>();
        connect.AddRange([0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x05, 0x02]);
        connect.AddRange([(byte)(KeepAliveSeconds >> 8), (byte)KeepAliveSeconds]);
        connect.Add(0x00); // no properties
        AddString(connect, Encoding.UTF8.GetBytes(ClientId));
        await WriteAsync(Packet(0x10, connect), cancellationToken);
        var (type, _, body) = await ReadPacketAsync(cancellationToken);
        if (type != 2 || body.Length < 2 || body[1] != 0)
        {
            throw new IOException($"{ClientId}: the broker refused the CONNECT (packet type {type}, reason 0x{(body.Length > 1 ? body[1] : 0):X2})");
        }

        var subscribe = new List<byte> { 0x00, 0x01, 0x00 };
        AddString(subscribe, Encoding.UTF8.GetBytes(EnrollTopics.ClientNamespace(ClientId) + "#"));
        subscribe.Add(0x01);
        AddString(subscribe, Encoding.UTF8.GetBytes(EnrollTopics.ServerKeys));
        subscribe.Add(0x01);
        await WriteAsync(Packet(0x82, subscribe), cancellationToken);
        while (true)
        {
            (type, var flags, body) = await ReadPacketAsync(cancellationToken);
            if (type == 9)
            {
                var properties = Varint(body.AsSpan(2), out var used);
                var refused = body.Skip(2 + used + properties).Where(code => code > 2).ToList();
                if (refused.Count > 0)
                {
                    throw new IOException($"{ClientId}: the broker refused a subscription (reason 0x{refused[0]:X2})");
                }

                return;
            }

            Handle(type, flags, body);
        }
    }

    private async Task ReadLoopAsync()
    {
        try
        {
            while (!_closed.IsCancellationRequested)
            {
                var (type, flags, body) = await ReadPacketAsync(_closed.Token);
                Handle(type, flags, body);
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // Closed by the bench, or by the broker: the bench checks which before it counts the session.
            if (!_closed.IsCancellationRequested)
            {
                Volatile.Write(ref _lost, 1);
            }
        }
    }

    private void Handle(int type, int flags, byte[] body)
    {
        if (type != 3)
        {
            return;
        }

        // PUBLISH: QoS in the fixed header's flags; at QoS 1 the packet identifier follows the topic.
        var topicLength = BinaryPrimitives.ReadUInt16BigEndian(body);
        var offset = 2 + topicLength;
        if (((flags >> 1) & 0x03) > 0)
        {
            Write([0x40, 0x02, body[offset], body[offset + 1]]);
            offset += 2;
        }

        var propertiesLength = Varint(body.AsSpan(offset), out var varintBytes);
        if ((flags & 0x01) != 0)
        {
            RetainedBytes += body.Length - offset - varintBytes - propertiesLength;
        }
    }

    private async Task<(int Type, int Flags, byte[] Body)> ReadPacketAsync(CancellationToken cancellationToken)
    {
        var one = new byte[1];
        await _stream.ReadExactlyAsync(one, cancellationToken);
        var header = one[0];
        var length = 0;
        var shift = 0;
        while (true)
        {
            await _stream.ReadExactlyAsync(one, cancellationToken);
            length |= (one[0] & 0x7F) << shift;
            if ((one[0] & 0x80) == 0)
            {
                break;
            }

            shift += 7;
        }

        var body = new byte[length];
        await _stream.ReadExactlyAsync(body, cancellationToken);
        return (header >> 4, header & 0x0F, body);
    }

    private static byte[] Packet(byte header, List<byte> body)
    {
        var packet = new List<byte>(body.Count + 5) { header };
        AddVarint(packet, body.Count);
        packet.AddRange(body);
        return [.. packet];
    }

    private async Task WriteAsync(byte[] packet, CancellationToken cancellationToken) => await _stream.WriteAsync(packet, cancellationToken);

    private void Write(byte[] packet)
    {
        lock (_writeLock)
        {
            _stream.Write(packet);
        }
    }

    private static void AddString(List<byte> buffer, byte[] value)
    {
        buffer.Add((byte)(value.Length >> 8));
        buffer.Add((byte)value.Length);
        buffer.AddRange(value);
    }

    private static void AddVarint(List<byte> buffer, int value)
    {
        do
        {
            var digit = (byte)(value % 128);
            value /= 128;
            buffer.Add(value > 0 ? (byte)(digit | 0x80) : digit);
        }
        while (value > 0);
    }

    private static int Varint(ReadOnlySpan<byte> bytes, out int consumed)
    {
        var value = 0;
        consumed = 0;
        while (consumed < bytes.Length)
        {
            var b = bytes[consumed];
            value |= (b & 0x7F) << (7 * consumed);
            consumed++;
            if ((b & 0x80) == 0)
            {
                break;
            }
        }

        return value;
    }
}
