using System.Buffers;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using MQTTnet.Channel;

namespace Enroll.Server.Broker.Transport;

/// <summary>
/// One accepted connection (plain TCP or TLS) as the broker sees it: every byte read passes the
/// <see cref="MqttFrameGuard"/> before the broker parses it.
/// </summary>
internal sealed class GuardedChannel(Stream stream, EndPoint localEndPoint, EndPoint remoteEndPoint, X509Certificate2? clientCertificate, bool isSecure, MqttFrameGuard guard, Action? onRead = null)
    : IMqttChannel
{
    private int _disposed;

    public X509Certificate2 ClientCertificate { get; } = clientCertificate!;

    public EndPoint RemoteEndPoint { get; } = remoteEndPoint;

    public EndPoint LocalEndPoint { get; } = localEndPoint;

    public bool IsSecureConnection { get; } = isSecure;

    public Task ConnectAsync(CancellationToken cancellationToken) => throw new NotSupportedException("A server-side channel is already connected.");

    public Task DisconnectAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        var read = await stream.ReadAsync(buffer.AsMemory(offset, count), cancellationToken).ConfigureAwait(false);
        guard.Inspect(buffer.AsSpan(offset, read));
        if (read > 0)
        {
            onRead?.Invoke();
        }

        return read;
    }

    public async Task WriteAsync(ReadOnlySequence<byte> buffer, bool isEndOfPacket, CancellationToken cancellationToken)
    {
        foreach (var segment in buffer)
        {
            await stream.WriteAsync(segment, cancellationToken).ConfigureAwait(false);
        }

        if (isEndOfPacket)
        {
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            stream.Dispose();
        }
    }
}
