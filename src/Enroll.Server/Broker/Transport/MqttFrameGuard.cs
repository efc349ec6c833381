namespace Enroll.Server.Broker.Transport;

/// <summary>
/// Follows the MQTT framing of a byte stream (fixed header, Remaining Length, body) as it is read, and stops a packet
/// that announces more than the limit or a Remaining Length longer than four bytes before the broker reads its body:
/// the broker allocates a packet's whole body up front, so a client announcing 268,435,455 bytes would otherwise cost
/// 256 MiB per connection.
/// </summary>
internal sealed class MqttFrameGuard(int maxPacketBytes)
{
    private State _state = State.Header;
    private int _length;
    private int _multiplier;
    private int _lengthBytes;
    private long _bodyLeft;

    private enum State
    {
        Header,
        Length,
        Body,
    }

    /// <summary>The largest packet (fixed header excluded) allowed.</summary>
    public int MaxPacketBytes { get; } = maxPacketBytes;

    /// <summary>Follows <paramref name="data"/>; throws <see cref="MqttFrameException"/> at the first byte that breaks a rule.</summary>
    public void Inspect(ReadOnlySpan<byte> data)
    {
        var i = 0;
        while (i < data.Length)
        {
            switch (_state)
            {
                case State.Header:
                    if (data[i] >> 4 == 0)
                    {
                        // Packet type 0 is reserved in every MQTT version.
                        throw new MqttFrameException("a packet of the reserved type 0");
                    }

                    _state = State.Length;
                    _length = 0;
                    _multiplier = 1;
                    _lengthBytes = 0;
                    i++;
                    break;

                case State.Length:
                    var b = data[i++];
                    _lengthBytes++;
                    _length += (b & 0x7F) * _multiplier;
                    if ((b & 0x80) == 0)
                    {
                        if (_length > MaxPacketBytes)
                        {
                            throw new MqttFrameException($"a packet of {_length:N0} bytes, over the limit of {MaxPacketBytes:N0}");
                        }

                        _bodyLeft = _length;
                        _state = _bodyLeft == 0 ? State.Header : State.Body;
                    }
                    else if (_lengthBytes == 4)
                    {
                        throw new MqttFrameException("a Remaining Length longer than four bytes");
                    }
                    else
                    {
                        _multiplier *= 128;
                    }

                    break;

                case State.Body:
                    var take = (int)Math.Min(_bodyLeft, data.Length - i);
                    _bodyLeft -= take;
                    i += take;
                    if (_bodyLeft == 0)
                    {
                        _state = State.Header;
                    }

                    break;
            }
        }
    }
}

/// <summary>A client broke the MQTT framing rules; its connection is closed.</summary>
internal sealed class MqttFrameException(string message) : IOException(message);
