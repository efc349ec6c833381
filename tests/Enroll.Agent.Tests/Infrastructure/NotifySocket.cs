using System.Net.Sockets;
using System.Text;

namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>
/// What systemd listens on for a <c>Type=notify</c> unit: a Unix datagram socket whose path the service finds in
/// <c>NOTIFY_SOCKET</c>. Each datagram is one notification (<c>READY=1</c>, <c>STOPPING=1</c>, ...).
/// </summary>
internal sealed class NotifySocket : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);

    public NotifySocket(string path)
    {
        Path = path;
        _socket.Bind(new UnixDomainSocketEndPoint(path));
    }

    public string Path { get; }

    /// <summary>The next notification; fails the test when none comes within <paramref name="timeout"/>.</summary>
    public async Task<string> ReceiveAsync(TimeSpan timeout)
    {
        var buffer = new byte[4096];
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            var length = await _socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
            return Encoding.UTF8.GetString(buffer, 0, length);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no notification on {Path} within {timeout.TotalSeconds:0} s");
        }
    }

    public void Dispose() => _socket.Dispose();
}
