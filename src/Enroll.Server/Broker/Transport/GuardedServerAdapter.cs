using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Enroll.Server.Diagnostics;
using Enroll.Shared.Tls;
using Microsoft.Extensions.Logging;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Server;

namespace Enroll.Server.Broker.Transport;

/// <summary>An address the broker listens on; with a certificate it speaks TLS.</summary>
internal sealed record BrokerListener(IPAddress Address, int Port, SslStreamCertificateContext? Certificate)
{
    public bool IsTls => Certificate is not null;
}

/// <summary>
/// The broker's TCP and TLS listeners. Unlike the stock listener it bounds what a connection can cost before it has
/// proved anything: the TLS handshake has a deadline, every packet passes the <see cref="MqttFrameGuard"/> before the
/// broker reads its body, and client certificates (mTLS) are checked against the configured CA only.
/// </summary>
internal sealed partial class GuardedServerAdapter(
    IReadOnlyList<BrokerListener> listeners,
    X509Certificate2Collection? clientCa,
    int maxPacketBytes,
    TimeSpan handshakeTimeout,
    ServerMetrics metrics,
    ILogger logger) : IMqttServerAdapter
{
    private readonly List<Socket> _sockets = [];
    private CancellationTokenSource? _stopping;

    public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

    public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger1)
    {
        if (_stopping is not null)
        {
            throw new InvalidOperationException("The listeners are already started.");
        }

        _stopping = new CancellationTokenSource();
        try
        {
            foreach (var listener in listeners)
            {
                var socket = new Socket(listener.Address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                _sockets.Add(socket);
                AllowRebindOverTimeWait(socket);
                try
                {
                    socket.Bind(new IPEndPoint(listener.Address, listener.Port));
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                    throw PortInUse.For(listener.IsTls ? "MQTT-over-TLS" : "MQTT", listener.Address, listener.Port, ex);
                }

                // The longest accept queue the kernel allows (net.core.somaxconn): when a fleet reconnects at once, a
                // connection that does not fit is dropped and its client waits a whole SYN retransmission (1 s, then 3 s).
                socket.Listen();
                _ = Task.Run(() => AcceptLoopAsync(socket, listener, options, _stopping.Token));
            }
        }
        catch
        {
            Stop();
            throw;
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Lets a restarted server bind its port while connections of the previous one linger in TIME_WAIT, and nothing more.
    /// .NET's <see cref="SocketOptionName.ReuseAddress"/> also sets SO_REUSEPORT on Linux and macOS, which lets a second
    /// server listen on the same port and the kernel split the devices between the two: so plain SO_REUSEADDR is set by
    /// number where that is its meaning, and nothing on Windows (where SO_REUSEADDR would allow the same theft).
    /// </summary>
    private static void AllowRebindOverTimeWait(Socket socket)
    {
        if (OperatingSystem.IsLinux())
        {
            socket.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
        }
        else if (OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
        {
            socket.SetRawSocketOption(0xffff /* SOL_SOCKET */, 4 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
        }
    }

    public Task StopAsync()
    {
        Stop();
        return Task.CompletedTask;
    }

    public void Dispose() => Stop();

    private void Stop()
    {
        _stopping?.Cancel();
        foreach (var socket in _sockets)
        {
            socket.Dispose();
        }

        _sockets.Clear();
        _stopping?.Dispose();
        _stopping = null;
    }

    private async Task AcceptLoopAsync(Socket socket, BrokerListener listener, MqttServerOptions options, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await socket.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                Log.AcceptFailed(logger, ex.Message);
                continue;
            }

            _ = Task.Run(() => ServeAsync(client, listener, options, stopping), CancellationToken.None);
        }
    }

    private async Task ServeAsync(Socket socket, BrokerListener listener, MqttServerOptions options, CancellationToken stopping)
    {
        var remote = socket.RemoteEndPoint ?? new IPEndPoint(IPAddress.None, 0);
        var local = socket.LocalEndPoint ?? new IPEndPoint(listener.Address, listener.Port);
        Stream stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            socket.NoDelay = true;
            X509Certificate2? clientCertificate = null;
            if (listener.Certificate is { } certificate)
            {
                (stream, clientCertificate) = await HandshakeAsync(stream, certificate, stopping).ConfigureAwait(false);
            }

            if (ClientHandler is not { } handler)
            {
                return;
            }

            using var channel = new GuardedChannel(stream, local, remote, clientCertificate, listener.IsTls, new MqttFrameGuard(maxPacketBytes));
            using var adapter = new MqttChannelAdapter(channel, new MqttPacketFormatterAdapter(new MqttBufferWriter(options.WriterBufferSize, options.WriterBufferSizeMax)), MqttNetNullLogger.Instance)
            {
                AllowPacketFragmentation = true,
            };
            await handler(adapter).ConfigureAwait(false);
        }
        catch (HandshakeRefusedException ex)
        {
            metrics.ConnectionRefused(ex.Reason);
            Log.TlsRefused(logger, remote, ex.Message);
        }
#pragma warning disable CA1031 // one connection's failure must never reach the listener
        catch (Exception ex)
#pragma warning restore CA1031
        {
            if (FindFrameError(ex) is { } frame)
            {
                metrics.ConnectionRefused("malformed_packet");
                Log.FramingViolation(logger, remote, frame.Message);
            }
            else if (!stopping.IsCancellationRequested )
            {
                Log.ConnectionEnded(logger, remote, ex.Message);
            }
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task<(Stream Stream, X509Certificate2? ClientCertificate)> HandshakeAsync(Stream stream, SslStreamCertificateContext certificate, CancellationToken stopping)
    {
        string? clientProblem = null;
        var tls = new SslStream(stream, leaveInnerStreamOpen: false, (_, presented, chain, errors) =>
        {
            if (presented is null)
            {
                // No client certificate: the device authenticates with a token as usual.
                return true;
            }

            if (clientCa is null)
            {
                clientProblem = "client certificates are not accepted here (the server has no --client-ca)";
                return false;
            }

            clientProblem = CertificateFiles.CheckChain(CertificateFiles.AsCertificate2(presented), clientCa, chain is null ? null : new X509Certificate2Collection(chain.ChainElements.Select(e => e.Certificate).ToArray()), forClientAuthentication: true);
            return clientProblem is null;
        });
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        deadline.CancelAfter(handshakeTimeout);
        try
        {
            await tls.AuthenticateAsServerAsync(
                new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = certificate,
                    ClientCertificateRequired = clientCa is not null,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    EncryptionPolicy = EncryptionPolicy.RequireEncryption,
                },
                deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw new HandshakeRefusedException("tls_timeout", $"no TLS handshake within {handshakeTimeout.TotalSeconds:0} s");
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException)
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw clientProblem is not null
                ? new HandshakeRefusedException("client_certificate", $"client certificate refused: {clientProblem}")
                : new HandshakeRefusedException("tls_handshake", $"TLS handshake failed: {ex.Message}");
        }

        var client = tls.RemoteCertificate is { } remoteCertificate ? CertificateFiles.AsCertificate2(remoteCertificate) : null;
        return (tls, client);
    }

    private static MqttFrameException? FindFrameError(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (current is MqttFrameException frame)
            {
                return frame;
            }
        }

        return null;
    }

    private sealed class HandshakeRefusedException(string reason, string message) : Exception(message)
    {
        public string Reason { get; } = reason;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1300, Level = LogLevel.Warning, Message = "Broker: accepting a connection failed: {Reason}")]
        public static partial void AcceptFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 1301, Level = LogLevel.Warning, Message = "Broker: refused a TLS connection from {Remote}: {Reason}")]
        public static partial void TlsRefused(ILogger logger, EndPoint remote, string reason);

        [LoggerMessage(EventId = 1302, Level = LogLevel.Warning, Message = "Broker: closed the connection from {Remote}: it sent {Problem}")]
        public static partial void FramingViolation(ILogger logger, EndPoint remote, string problem);

        [LoggerMessage(EventId = 1303, Level = LogLevel.Debug, Message = "Broker: the connection from {Remote} ended: {Reason}")]
        public static partial void ConnectionEnded(ILogger logger, EndPoint remote, string reason);
    }
}
