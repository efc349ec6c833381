using System.Net;
using System.Net.Sockets;

namespace Enroll.Testing;

/// <summary>
/// A TCP port a device is pointed at, standing for its broker, that a test switches between faults: refuse (accept each
/// connection and close it at once, as a broker that is down behind a load balancer), or forward every byte to a real
/// broker (the Enroll server, a stand-in broker, Mosquitto). It counts connection attempts, and switching closes every
/// forwarded connection so the device meets the new behaviour at once.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly List<TcpClient> _open = [];
    private readonly Task _accepting;
    private IPEndPoint? _target;
    private int _connections;

    private FaultProxy(IPEndPoint? target)
    {
        _target = target;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _accepting = Task.Run(AcceptAsync);
    }

    /// <summary>The address to give the device.</summary>
    public Uri Endpoint => new($"mqtt://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");

    /// <summary>Every TCP connection the device opened so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Starts refusing (accept and close) every connection.</summary>
    public static FaultProxy Refusing() => new(null);

    /// <summary>Starts forwarding to <paramref name="broker"/>.</summary>
    public static FaultProxy ForwardingTo(Uri broker) => new(ToEndPoint(broker));

    /// <summary>From now on, accept and close every connection; open ones are closed.</summary>
    public void Refuse() => Switch(null);

    /// <summary>From now on, forward to <paramref name="broker"/>; open ones are closed.</summary>
    public void ForwardTo(Uri broker) => Switch(ToEndPoint(broker));

    private static IPEndPoint ToEndPoint(Uri broker) => new(IPAddress.Parse(broker.Host), broker.Port);

    private void Switch(IPEndPoint? target)
    {
        List<TcpClient> open;
        lock (_lock)
        {
            _target = target;
            open = [.. _open];
            _open.Clear();
        }

        foreach (var client in open)
        {
            client.Dispose();
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _connections);
            IPEndPoint? target;
            lock (_lock)
            {
                target = _target;
            }

            if (target is null)
            {
                client.Client.LingerState = new LingerOption(true, 0);
                client.Dispose();
                continue;
            }

            _ = Task.Run(() => ForwardAsync(client, target));
        }
    }

    private async Task ForwardAsync(TcpClient client, IPEndPoint target)
    {
        var upstream = new TcpClient();
        lock (_lock)
        {
            _open.Add(client);
            _open.Add(upstream);
        }

        try
        {
            await upstream.ConnectAsync(target, _stop.Token);
            using var done = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            var a = client.GetStream().CopyToAsync(upstream.GetStream(), done.Token);
            var b = upstream.GetStream().CopyToAsync(client.GetStream(), done.Token);
            await Task.WhenAny(a, b);
            await done.CancelAsync();
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // One side went away or the test switched the fault: close both.
        }
        finally
        {
            lock (_lock)
            {
                _open.Remove(client);
                _open.Remove(upstream);
            }

            client.Dispose();
            upstream.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Switch(null);
        await _accepting;
        _stop.Dispose();
    }
}
