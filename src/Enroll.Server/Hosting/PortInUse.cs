using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Enroll.Server;

/// <summary>Turns "address already in use" from a listener into a <see cref="ServerStartException"/> naming the port.</summary>
internal static partial class PortInUse
{
    /// <summary>
    /// The exception for <paramref name="port"/> on <paramref name="address"/>, which another process holds. The socket
    /// error is left out on purpose: the message says all there is, and a host that adds its own hint for an
    /// "address in use" it finds inside would say it twice.
    /// </summary>
    public static ServerStartException For(string what, IPAddress address, int port) =>
        new(
            ServerStartProblem.PortInUse,
            string.Create(CultureInfo.InvariantCulture, $"{what} port {port} on {address} is already in use (another server?); stop it, or choose another port"))
        { Port = port };

    /// <summary>
    /// The start-up failure <paramref name="exception"/> as a <see cref="ServerStartException"/> when it is a busy port;
    /// null for anything else. Kestrel says which address in its message ("Failed to bind to address http://...:8080").
    /// </summary>
    public static ServerStartException? Describe(Exception exception, IPAddress bind, EnrollServerOptions options)
    {
        if (exception is ServerStartException start)
        {
            return start;
        }

        if (!IsAddressInUse(exception))
        {
            return null;
        }

        for (var current = exception; current is not null; current = current.InnerException)
        {
            var match = BoundAddress().Match(current.Message);
            if (match.Success && int.TryParse(match.Groups["port"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var port))
            {
                return For(match.Groups["scheme"].Value == "https" ? "HTTPS" : "HTTP", bind, port);
            }
        }

        var ports = options.NoPlaintext
            ? options.HttpsPort.ToString(CultureInfo.InvariantCulture)
            : string.Create(CultureInfo.InvariantCulture, $"{options.HttpPort}");
        return new ServerStartException(ServerStartProblem.PortInUse, $"HTTP port {ports} on {bind} is already in use (another server?); stop it, or choose another port");
    }

    private static bool IsAddressInUse(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (current is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse }
                || current.GetType().Name == "AddressInUseException")
            {
                return true;
            }
        }

        return false;
    }

    [GeneratedRegex(@"(?<scheme>https?)://[^\s]*:(?<port>\d{1,5})")]
    private static partial Regex BoundAddress();
}
