namespace Enroll.Device.Connection;

/// <summary>A parsed broker URI: <c>mqtt://host:port</c> (default port 1883) or <c>mqtts://host:port</c> (default 8883).</summary>
internal sealed record BrokerAddress(string Host, int Port, bool UseTls)
{
    public static BrokerAddress Parse(Uri uri)
    {
        var tls = uri.Scheme is "mqtts" or "ssl";
        if (uri.Scheme is not ("mqtt" or "mqtts" or "tcp" or "ssl"))
        {
            throw new ArgumentException($"Unsupported broker scheme '{uri.Scheme}': use mqtt:// or mqtts://.", nameof(uri));
        }

        var port = uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 8883 : 1883) : uri.Port;
        return new BrokerAddress(uri.Host, port, tls);
    }

    public override string ToString() => $"{(UseTls ? "mqtts" : "mqtt")}://{Host}:{Port}";
}
