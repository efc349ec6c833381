namespace Enroll.Server.Broker;

/// <summary>Keys of what the broker remembers about a connected client in its session items.</summary>
internal static class BrokerSession
{
    /// <summary>The Device ID a client authenticated as (absent for anonymous clients).</summary>
    public const string DeviceId = "enroll.device_id";

    /// <summary>The <see cref="Handlers.CertificateIdentity"/> of an anonymous client that presented a valid client certificate.</summary>
    public const string Certificate = "enroll.certificate";

    /// <summary>The topic filters the client subscribed to, with their QoS, for answers delivered straight to its session.</summary>
    public const string Subscriptions = "enroll.subscriptions";

    /// <summary>The client's remote IP address, for per-source rate limits.</summary>
    public const string RemoteAddress = "enroll.remote_address";

    /// <summary>Ingestion still being stored, by packet identifier, whose PUBACK must wait for it.</summary>
    public const string PendingAcks = "enroll.pending_acks";

    /// <summary>Set while the packet being processed was already taken for ingestion when it arrived.</summary>
    public const string IngestStarted = "enroll.ingest_started";

    /// <summary>The keep-alive granted to the client (seconds), sent in the CONNACK as Server Keep Alive.</summary>
    public const string ServerKeepAlive = "enroll.server_keep_alive";

    /// <summary>The client ID the server uses for messages it publishes itself.</summary>
    public const string ServerClientId = "$enroll-server";
}
