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
/// broker reads its body, and client certificates (mTLS) are checked against the configured CA only. It also bounds what
/// many connections cost: at most <c>maxConnections</c> are open (below the descriptor limit); a connection that stays
/// silent past its idle limit (the connect timeout until CONNECT, then 1.5 times its keep-alive) is closed; at the cap a
/// new connection takes the place of the anonymous one silent longest, if that one has been silent for
/// <see cref="EvictableAfter"/>, and is closed before anything is read otherwise; and an accept that fails (EMFILE) backs
/// off instead of spinning. Each of these is counted and logged once per interval.
/// </summary>
internal sealed partial class GuardedServerAdapter(
    IReadOnlyList<BrokerListener> listeners,
    X509Certificate2Collection? clientCa,
    int maxPacketBytes,
    TimeSpan handshakeTimeout,
    int maxConnections,
    TimeProvider timeProvider,
    ServerMetrics metrics,
    ILogger logger,
    Refusals.RefusalLog? refusals = null) : IMqttServerAdapter
{
    /// <summary>How long an anonymous connection must have been silent before a new connection at the cap may take its place.</summary>
    public static readonly TimeSpan EvictableAfter = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxAcceptBackoff = TimeSpan.FromSeconds(1);

    private readonly List<Socket> _sockets = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Connection, byte> _connections = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<IMqttChannelAdapter, Connection> _byAdapter = new();
    private readonly RepeatedCondition _capped = new(timeProvider, RepeatedCondition.DefaultInterval);
    private readonly RepeatedCondition _idleClosed = new(timeProvider, RepeatedCondition.DefaultInterval);
    private readonly RepeatedCondition _acceptFailed = new(timeProvider, RepeatedCondition.DefaultInterval);
    private CancellationTokenSource? _stopping;

    /// <summary>The most connections open at once.</summary>
    public int MaxConnections { get; } = maxConnections;

    /// <summary>Connections open now.</summary>
    public int OpenConnections => _connections.Count;

    /// <summary>
    /// Called once the broker accepted the CONNECT of <paramref name="adapter"/>: from now on the connection is closed
    /// after <paramref name="idleLimit"/> without a byte from the client, and a device's is never taken for a newcomer.
    /// </summary>
    public void Connected(IMqttChannelAdapter adapter, TimeSpan idleLimit, bool isDevice)
    {
        if (_byAdapter.TryGetValue(adapter, out var connection))
        {
            connection.IdleLimit = idleLimit;
            connection.IsDevice = isDevice;
            connection.Connected = true;
        }
    }

    public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

    public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger1)
    {
        if (_stopping is not null)
        {
            throw new InvalidOperationException("The listeners are already started.");
        }

        metrics.ObserveConnectedDevices(() => _connections.Count(c => c.Key.IsDevice));

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
                catch (SocketException bindFailure) when (bindFailure.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                    throw PortInUse.For(listener.IsTls ? "MQTT-over-TLS" : "MQTT", listener.Address, listener.Port);
                }

                // The longest accept queue the kernel allows (net.core.somaxconn): when a fleet reconnects at once, a
                // connection that does not fit is dropped and its client waits a whole SYN retransmission (1 s, then 3 s).
                socket.Listen();
                _ = Task.Run(() => AcceptLoopAsync(socket, listener, options, _stopping.Token));
            }

            _ = Task.Run(() => SweepAsync(_stopping.Token));
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

        foreach (var connection in _connections.Keys)
        {
            connection.Close();
        }

        _sockets.Clear();
        _stopping?.Dispose();
        _stopping = null;
    }

    private async Task AcceptLoopAsync(Socket socket, BrokerListener listener, MqttServerOptions options, CancellationToken stopping)
    {
        var backoff = TimeSpan.Zero;
        while (!stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await socket.AcceptAsync(stopping).ConfigureAwait(false);
                backoff = TimeSpan.Zero;
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                // Out of descriptors (EMFILE/ENFILE) the pending connection stays queued and the next accept fails at once:
                // retrying without a pause spins a core and writes a log line each time. Wait, doubling up to a second.
                backoff = backoff == TimeSpan.Zero ? TimeSpan.FromMilliseconds(10) : TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxAcceptBackoff.Ticks));
                metrics.ConnectionRefused(ex.SocketErrorCode == SocketError.TooManyOpenSockets ? "too_many_open_files" : "accept_failed");
                if (_acceptFailed.Occurred(out var failures))
                {
                    Log.AcceptFailed(logger, failures, ex.Message, backoff.TotalMilliseconds);
                }

                try
                {
                    await Task.Delay(backoff, timeProvider, stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            if (!TryAdmit(client, out var connection))
            {
                continue;
            }

            _ = Task.Run(() => ServeAsync(client, connection, listener, options, stopping), CancellationToken.None);
        }
    }

    /// <summary>
    /// Makes room for <paramref name="client"/>, or closes it before anything is read: at the cap, the anonymous (or not
    /// yet connected) connection silent longest gives way if it has been silent for <see cref="EvictableAfter"/>.
    /// </summary>
    private bool TryAdmit(Socket client, out Connection connection)
    {
        var now = timeProvider.GetTimestamp();
        // The handshake limit from the first moment it is tracked: the sweep may see it before ServeAsync runs, and a limit
        // of zero would close it as silent at once (a connection lost while the machine is busy).
        connection = new Connection(client, now) { IdleLimit = handshakeTimeout };
        if (_connections.Count >= MaxConnections)
        {
            // Enumerated in place: Keys would copy every connection into a new array for each newcomer at the cap (an
            // array on the large-object heap past 10,000 connections, garbage at once).
            Connection? victim = null;
            foreach (var (candidate, _) in _connections)
            {
                if (!candidate.IsDevice && (victim is null || candidate.LastActivity < victim.LastActivity))
                {
                    victim = candidate;
                }
            }

            if (victim is null || timeProvider.GetElapsedTime(victim.LastActivity, now) < EvictableAfter || !_connections.TryRemove(victim, out _))
            {
                // The address is read before the socket is closed (a disposed socket has none to give).
                var address = (client.RemoteEndPoint as IPEndPoint)?.Address.ToString();
                client.Dispose();
                metrics.ConnectionRefused("connection_limit");
                refusals?.Record(Refusals.RefusalLog.ConnectionRefused, "connection_limit", address);
                if (_capped.Occurred(out var refused))
                {
                    Log.ConnectionLimit(logger, refused, MaxConnections);
                }

                return false;
            }

            victim.Close();
            metrics.ConnectionRefused("evicted_idle");
        }

        _connections.TryAdd(connection, 0);
        metrics.ConnectionOpened();
        return true;
    }

    /// <summary>Closes every connection silent past its idle limit, once a second.</summary>
    private async Task SweepAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(SweepInterval, timeProvider, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            var now = timeProvider.GetTimestamp();
            foreach (var (connection, _) in _connections)
            {
                if (timeProvider.GetElapsedTime(connection.LastActivity, now) > connection.IdleLimit && _connections.TryRemove(connection, out _))
                {
                    connection.Close();
                    metrics.ConnectionRefused(connection.Connected ? "idle_timeout" : "connect_timeout");
                    if (_idleClosed.Occurred(out var closed))
                    {
                        Log.IdleClosed(logger, closed);
                    }
                }
            }
        }
    }

    private async Task ServeAsync(Socket socket, Connection connection, BrokerListener listener, MqttServerOptions options, CancellationToken stopping)
    {
        var remote = socket.RemoteEndPoint ?? new IPEndPoint(IPAddress.None, 0);
        var local = socket.LocalEndPoint ?? new IPEndPoint(listener.Address, listener.Port);
        Stream stream = new NetworkStream(socket, ownsSocket: true);
        connection.IdleLimit = handshakeTimeout;
        IMqttChannelAdapter? registered = null;
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

            using var channel = new GuardedChannel(stream, local, remote, clientCertificate, listener.IsTls, new MqttFrameGuard(maxPacketBytes), () => connection.LastActivity = timeProvider.GetTimestamp());
            using var adapter = new MqttChannelAdapter(channel, new MqttPacketFormatterAdapter(new MqttBufferWriter(options.WriterBufferSize, options.WriterBufferSizeMax)), MqttNetNullLogger.Instance)
            {
                AllowPacketFragmentation = true,
            };
            registered = adapter;
            _byAdapter[adapter] = connection;
            await handler(adapter).ConfigureAwait(false);
        }
        catch (HandshakeRefusedException ex)
        {
            metrics.ConnectionRefused(ex.Reason);
            refusals?.Record(Refusals.RefusalLog.ConnectionRefused, ex.Reason, (remote as IPEndPoint)?.Address.ToString());
            Log.TlsRefused(logger, remote, ex.Message);
        }
#pragma warning disable CA1031 // one connection's failure must never reach the listener
        catch (Exception ex)
#pragma warning restore CA1031
        {
            if (FindFrameError(ex) is { } frame)
            {
                metrics.ConnectionRefused("malformed_packet");
                refusals?.Record(Refusals.RefusalLog.ConnectionRefused, "malformed_packet", (remote as IPEndPoint)?.Address.ToString());
                Log.FramingViolation(logger, remote, frame.Message);
            }
            else if (!stopping.IsCancellationRequested )
            {
                Log.ConnectionEnded(logger, remote, ex.Message);
            }
        }
        finally
        {
            if (registered is not null)
            {
                _byAdapter.TryRemove(registered, out _);
            }

            _connections.TryRemove(connection, out _);
            metrics.ConnectionClosed();
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

    /// <summary>One open connection as the limits see it.</summary>
    private sealed class Connection(Socket socket, long openedAt)
    {
        private long _lastActivity = openedAt;

        /// <summary>When the client last sent a byte (a <see cref="TimeProvider"/> timestamp).</summary>
        public long LastActivity
        {
            get => Interlocked.Read(ref _lastActivity);
            set => Interlocked.Exchange(ref _lastActivity, value);
        }

        public TimeSpan IdleLimit { get; set; }

        public bool IsDevice { get; set; }

        public bool Connected { get; set; }

        /// <summary>Ends the connection; the broker sees its channel fail and cleans up the session.</summary>
        public void Close()
        {
            try
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }

            socket.Dispose();
        }
    }

    private sealed class HandshakeRefusedException(string reason, string message) : Exception(message)
    {
        public string Reason { get; } = reason;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1300, Level = LogLevel.Warning, Message = "Broker: accepting a connection failed {Count} time(s) since the last report: {Reason}; waiting {BackoffMs} ms between attempts")]
        public static partial void AcceptFailed(ILogger logger, long count, string reason, double backoffMs);

        [LoggerMessage(EventId = 1304, Level = LogLevel.Warning, Message = "Broker: {Count} connection(s) refused since the last report: {Max} connections are open, the most allowed (MaxConnections, below the open-file limit)")]
        public static partial void ConnectionLimit(ILogger logger, long count, int max);

        [LoggerMessage(EventId = 1305, Level = LogLevel.Information, Message = "Broker: closed {Count} silent connection(s) since the last report (no CONNECT within the connect timeout, or nothing within 1.5 times the keep-alive)")]
        public static partial void IdleClosed(ILogger logger, long count);

        [LoggerMessage(EventId = 1301, Level = LogLevel.Warning, Message = "Broker: refused a TLS connection from {Remote}: {Reason}")]
        public static partial void TlsRefused(ILogger logger, EndPoint remote, string reason);

        [LoggerMessage(EventId = 1302, Level = LogLevel.Warning, Message = "Broker: closed the connection from {Remote}: it sent {Problem}")]
        public static partial void FramingViolation(ILogger logger, EndPoint remote, string problem);

        [LoggerMessage(EventId = 1303, Level = LogLevel.Debug, Message = "Broker: the connection from {Remote} ended: {Reason}")]
        public static partial void ConnectionEnded(ILogger logger, EndPoint remote, string reason);
    }
}
