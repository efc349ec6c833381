using System.Net;
using System.Net.Sockets;

namespace Enroll.Server.Broker;

/// <summary>Finds a free TCP port on an address (the OS picks one for port 0; the listener is closed again).</summary>
internal static class FreePort
{
    public static int Find(IPAddress address)
    {
        using var listener = new TcpListener(address, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
