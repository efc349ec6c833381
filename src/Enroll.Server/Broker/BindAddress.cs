using System.Net;

namespace Enroll.Server.Broker;

/// <summary>Turns the <c>--bind</c> value (an IP address, <c>localhost</c>, or <c>*</c>/<c>0.0.0.0</c>) into an address.</summary>
internal static class BindAddress
{
    public static IPAddress Parse(string bind)
    {
        if (string.IsNullOrWhiteSpace(bind) || bind is "*" or "+")
        {
            return IPAddress.Any;
        }

        if (string.Equals(bind, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            return IPAddress.Loopback;
        }

        if (IPAddress.TryParse(bind, out var address))
        {
            return address;
        }

        throw new ArgumentException($"--bind must be an IP address, 'localhost' or '*', not '{bind}'.", nameof(bind));
    }

    /// <summary>The host name clients should use to reach <paramref name="address"/>.</summary>
    public static string ClientHost(IPAddress address) =>
        address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) ? "127.0.0.1"
        : address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]"
        : address.ToString();
}
