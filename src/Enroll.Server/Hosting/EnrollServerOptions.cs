using Enroll.Protocol.Transfers;

namespace Enroll.Server;

/// <summary>Settings of an Enroll server. Every default runs a complete server on one machine.</summary>
public sealed class EnrollServerOptions
{
    /// <summary>The address the broker and HTTP API listen on. The default value is <c>127.0.0.1</c>.</summary>
    public string Bind { get; set; } = "127.0.0.1";

    /// <summary>The embedded broker's MQTT port, 1-65535; 0 picks a free port. The default value is 1883.</summary>
    [Port("MQTT port (--mqtt-port)")]
    public int MqttPort { get; set; } = 1883;

    /// <summary>The HTTP API port, 1-65535; 0 picks a free port. The default value is 8080.</summary>
    [Port("HTTP port (--http-port)")]
    public int HttpPort { get; set; } = 8080;

    /// <summary>
    /// A PEM certificate (chain) for the server's TLS listeners, with <see cref="TlsKeyFile"/>. When set, the broker also
    /// listens with TLS on <see cref="MqttTlsPort"/> and the HTTP API with HTTPS on <see cref="HttpsPort"/>.
    /// </summary>
    public string? TlsCertificateFile { get; set; }

    /// <summary>The PEM private key of <see cref="TlsCertificateFile"/>.</summary>
    public string? TlsKeyFile { get; set; }

    /// <summary>The broker's MQTT-over-TLS port; 0 picks a free port. The default value is 8883.</summary>
    [Port("MQTT-over-TLS port (--mqtts-port)")]
    public int MqttTlsPort { get; set; } = 8883;

    /// <summary>The HTTPS port of the API; 0 picks a free port. The default value is 8443.</summary>
    [Port("HTTPS port (--https-port)")]
    public int HttpsPort { get; set; } = 8443;

    /// <summary>Serve only TLS: no plain MQTT or HTTP listener (needs <see cref="TlsCertificateFile"/>). The default value is false.</summary>
    public bool NoPlaintext { get; set; }

    /// <summary>
    /// PEM CA certificates for client-certificate registration (mTLS). A device that connects over TLS with a certificate
    /// signed by one of them, whose common name is its MQTT client ID, registers without a Provisioning Token. The
    /// default value is null (client certificates are refused).
    /// </summary>
    public string? ClientCaFile { get; set; }

    /// <summary>
    /// The organisation of devices registered by client certificate when the certificate names none (its O attribute).
    /// The default value is <c>default</c>.
    /// </summary>
    public string ClientCertificateOrg { get; set; } = "default";

    /// <summary>
    /// The largest MQTT packet the embedded broker reads; a client announcing a larger one is disconnected before the
    /// broker allocates anything for it. The default value is 1,114,112 bytes (1 MiB of payload plus headers).
    /// </summary>
    [CountRange("maximum packet size", 1024, 268_435_455)]
    public int MaxPacketBytes { get; set; } = (1024 * 1024) + (64 * 1024);

    /// <summary>
    /// How long a new connection has to finish its TLS handshake and send CONNECT before it is closed: 1 second to
    /// 5 minutes. The default value is 10 seconds.
    /// </summary>
    [DurationRange("connect timeout", "00:00:01", "00:05:00")]
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// An external MQTT 5 broker (Mosquitto, EMQX, HiveMQ, ...) to use instead of the embedded one, as
    /// <c>mqtt://host:port</c>. The broker then authenticates devices and enforces access control (see
    /// docs/operations.md); the server connects as <see cref="BrokerUsername"/>. The default value is null (embedded).
    /// </summary>
    public Uri? ExternalBroker { get; set; }

    /// <summary>The user the server connects to an external broker as. The default value is <c>enroll-server</c>.</summary>
    public string BrokerUsername { get; set; } = "enroll-server";

    /// <summary>The server's password on the external broker; only the server should know it.</summary>
    public string? BrokerPassword { get; set; }

    /// <summary>
    /// Serves the authentication and authorization webhooks of EMQX 5 (HTTP authn/authz) and VerneMQ (vmq_webhooks) on
    /// the HTTP port, under <c>/broker/...</c>, so such a broker admits devices by their access tokens and confines them to
    /// their own topics. The broker presents the key in <c>{data}/broker-hooks.key</c>. The default value is false.
    /// </summary>
    public bool BrokerHooks { get; set; }

    /// <summary>
    /// This instance's name on an external broker, the stem of its two MQTT client IDs: <c>{id}-requests</c> (clean
    /// session, shared subscriptions to the request topics) and <c>{id}-ingest</c> (persistent session, shared
    /// subscription to the device message topics). Give every instance its own, stable across restarts, so a restarted
    /// instance takes back the messages the broker queued for it (docs/operations.md). 1-100 letters, digits, <c>.</c>,
    /// <c>_</c>, <c>-</c> or <c>:</c>. The default value is null: <c>$enroll-server-{machine name}</c>.
    /// </summary>
    public string? BrokerClientId { get; set; }

    /// <summary>
    /// How long an external broker keeps this instance's ingest session (and queues device messages for it) while the
    /// instance is away: 1 minute to 365 days. The default value is 1 day.
    /// </summary>
    [DurationRange("broker session expiry (--broker-session-expiry)", "00:01:00", "365.00:00:00")]
    public TimeSpan BrokerSessionExpiry { get; set; } = TimeSpan.FromDays(1);

    /// <summary>
    /// Whether the server administers the external broker's authentication: <see cref="BrokerAdmin.MosquittoDynamicSecurity"/>
    /// gives each device a Mosquitto dynamic-security client with its access token as password, and disables it on
    /// revocation (<see cref="BrokerUsername"/> needs the plugin's admin role; docs/operations.md). Only with
    /// <see cref="ExternalBroker"/>. The default value is <see cref="BrokerAdmin.None"/>.
    /// </summary>
    public BrokerAdmin BrokerAdmin { get; set; }

    /// <summary>
    /// The address of the broker's administration API, for <see cref="BrokerAdmin.EmqxApi"/>: an EMQX node's dashboard
    /// listener, <c>http://emqx:18083/</c>. The default value is null.
    /// </summary>
    public Uri? BrokerAdminUrl { get; set; }

    /// <summary>
    /// The credential of <see cref="BrokerAdminUrl"/>: an EMQX API key as <c>key:secret</c> (the CLI reads it from
    /// <c>ENROLL_BROKER_ADMIN_KEY</c>). The default value is null.
    /// </summary>
    public string? BrokerAdminKey { get; set; }

    /// <summary>
    /// A file holding the key-encryption key (base64 of 32 random bytes, readable by the owner only) the server keys are
    /// sealed under in the registry; every instance sharing a database must be given the same one (or the
    /// <c>ENROLL_KEY_ENCRYPTION_KEY</c> variable). Required with <see cref="Database"/>. The default value is null: the
    /// variable, else (SQLite only) <c>{data}/keys/key-encryption.key</c>, created on the first start.
    /// </summary>
    public string? KeyEncryptionKeyFile { get; set; }

    /// <summary>The folder holding the SQLite registry, signing keys and admin key. The default value is <c>./enroll-data</c>.</summary>
    public string DataDirectory { get; set; } = "enroll-data";

    /// <summary>
    /// Accept registration requests without any credential. Only for trusted networks. The default value is false.
    /// </summary>
    public bool OpenRegistration { get; set; }

    /// <summary>The organisation of devices registered without a credential. The default value is <c>default</c>.</summary>
    public string OpenRegistrationOrg { get; set; } = "default";

    /// <summary>The issuer (<c>iss</c>) written into tokens. The default value is <c>enroll</c>.</summary>
    public string Issuer { get; set; } = Protocol.ProtocolDefaults.Issuer;

    /// <summary>
    /// How long access tokens live: 1 minute to 30 days, and no longer than <see cref="RegistrationTokenLifetime"/>
    /// (a device renews its access token with its Registration Token). The default value is 24 hours.
    /// </summary>
    [DurationRange("access token lifetime (--access-token-lifetime)", EnrollServerOptionsValidation.MinAccessTokenLifetimeText, EnrollServerOptionsValidation.MaxAccessTokenLifetimeText)]
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(24);

    /// <summary>
    /// How long Registration Tokens live unless their Provisioning Token says otherwise: 1 hour to 3650 days. The default
    /// value is 30 days.
    /// </summary>
    [DurationRange("registration token lifetime (--registration-token-lifetime)", EnrollServerOptionsValidation.MinRegistrationTokenLifetimeText, EnrollServerOptionsValidation.MaxRegistrationTokenLifetimeText)]
    public TimeSpan RegistrationTokenLifetime { get; set; } = TimeSpan.FromDays(30);

    /// <summary>
    /// How long a refreshed-away Registration Token may still be used once (for a device that lost the refresh answer).
    /// Any later use revokes the device's tokens. 0 to 1 hour; the default value is 60 seconds.
    /// </summary>
    [DurationRange("refresh grace", "00:00:00", "01:00:00")]
    public TimeSpan RefreshGrace { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How often a device with a pending operation is told to poll <c>complete</c>: 1 second to 1 day. The default value is 10 seconds.</summary>
    [DurationRange("pending poll interval", "00:00:01", "1.00:00:00")]
    public TimeSpan PendingPollInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a provisioning operation may stay pending: 1 minute to 365 days. The default value is 24 hours.</summary>
    [DurationRange("operation lifetime (--operation-lifetime)", "00:01:00", "365.00:00:00")]
    public TimeSpan OperationLifetime { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Tolerated clock difference when checking token lifetimes: 0 to 1 hour. The default value is 60 seconds.</summary>
    [DurationRange("clock skew", "00:00:00", "01:00:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Refuse requests that are not end-to-end encrypted (JWE ECDH-ES + A256GCM to the server's published key), so a shared
    /// or third-party broker never sees tokens or metadata in clear. The default value is false.
    /// </summary>
    public bool RequireEncryption { get; set; }

    /// <summary>
    /// How durable a registry commit is when the server acknowledges it: <c>true</c> (the default) waits for the disk
    /// (<c>synchronous=FULL</c>); <c>false</c> (<c>synchronous=NORMAL</c>) survives a crash of the server process but may
    /// lose the last acknowledged writes on power loss.
    /// </summary>
    public bool DurableCommits { get; set; } = true;

    /// <summary>
    /// The PostgreSQL database the registry is kept in, as an Npgsql connection string without a password
    /// (<c>Host=db;Database=enroll;Username=enroll</c>); the password comes from <c>ENROLL_DATABASE_PASSWORD</c> or a
    /// passfile (<c>PGPASSFILE</c>, <c>~/.pgpass</c>, or <c>Passfile=</c> in the string). Null (the default) keeps the
    /// registry in SQLite in the data folder.
    /// </summary>
    public string? Database { get; set; }

    /// <summary>The largest request payload accepted, in bytes. The default value is 65,536.</summary>
    public int MaxRequestBytes { get; set; } = 64 * 1024;

    /// <summary>Requests waiting for a handler before new ones are answered <c>unavailable</c>. The default value is 10,000.</summary>
    [CountRange("request queue length", 1, 10_000_000)]
    public int MaxQueuedRequests { get; set; } = 10_000;

    /// <summary>Failed credential attempts one client ID may make per <see cref="FailureWindow"/>. The default value is 5.</summary>
    [CountRange("client failure limit", 1, 1_000_000)]
    public int ClientFailureLimit { get; set; } = 5;

    /// <summary>
    /// Failed credential attempts one source address may make per <see cref="FailureWindow"/>; generous, because many
    /// devices can share an address behind NAT. The default value is 100.
    /// </summary>
    [CountRange("source failure limit", 1, 1_000_000)]
    public int SourceFailureLimit { get; set; } = 100;

    /// <summary>The window the failure limits refill over. The default value is 1 minute.</summary>
    [DurationRange("failure window", "00:00:01", "1.00:00:00")]
    public TimeSpan FailureWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Requests handled at once. Handlers spend most of their time waiting for the registry's group commit, and every
    /// request waiting there joins the same commit, so this is well above the processor count. The default value is 64.
    /// </summary>
    [CountRange("handler concurrency", 1, 4096)]
    public int HandlerConcurrency { get; set; } = 64;

    /// <summary>
    /// The longest keep-alive the embedded broker grants (MQTT 5 Server Keep Alive in the CONNACK): a client asking for 0
    /// (no keep-alive) or for more gets this one, and a session that sends nothing for 1.5 times its keep-alive is closed
    /// (MQTT 3.1.1 clients, which cannot be told, are closed at 1.5 times this maximum). 5 seconds to 65,535 seconds; the
    /// default value is 300 seconds.
    /// </summary>
    [DurationRange("maximum keep-alive", "00:00:05", "18:12:15")]
    public TimeSpan MaxKeepAlive { get; set; } = TimeSpan.FromSeconds(300);

    /// <summary>
    /// The most broker connections open at once; a connection beyond it is closed before anything is read from it, and
    /// counted (<c>enroll.server.broker.connections.refused</c>, reason <c>connection_limit</c>). Null (the default) takes
    /// the process's open-file limit (<c>ulimit -n</c>) less a reserve for the registry, the HTTP API and key files: at
    /// most 80 % of it, and at least 128 below it. <c>enroll server --max-connections</c>.
    /// </summary>
    [CountRange("maximum connections (--max-connections)", 1, 10_000_000)]
    public int? MaxConnections { get; set; }

    /// <summary>The largest request body the HTTP API reads: 1 KiB to 16 MiB. The default value is 65,536 bytes.</summary>
    [CountRange("maximum admin request body", 1024, 16 * 1024 * 1024)]
    public int MaxAdminRequestBytes { get; set; } = 64 * 1024;

    /// <summary>
    /// Wrong admin keys one remote address may present per <see cref="FailureWindow"/> before the API answers 429 with
    /// Retry-After. The default value is 10.
    /// </summary>
    [CountRange("admin key failure limit", 1, 1_000_000)]
    public int AdminKeyFailureLimit { get; set; } = 10;

    /// <summary>
    /// How long a device is asked to wait (<c>retry_after_seconds</c>, and Retry-After on the HTTP API) when the
    /// registry's disk is full: 1 second to 1 hour. Devices spread their own retries around it. The default value is 30 seconds.
    /// </summary>
    [DurationRange("disk-full retry-after", "00:00:01", "01:00:00")]
    public TimeSpan DiskFullRetryAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The folder of the file store (SPEC §2.7): transfers being received in <c>staging/</c>, stored files in
    /// <c>stored/</c>. Every instance sharing a registry must share this folder too (docs/operations.md). The default value
    /// is null: <c>{data}/files</c>.
    /// </summary>
    public string? FilesDirectory { get; set; }

    /// <summary>
    /// The largest message a device may send in chunks, in bytes as sent (before decompression, and its decompressed
    /// size too): 1 KiB to 256 MiB. The server holds one such message in memory while it stores it. A message in one
    /// packet is bounded by <see cref="MaxPacketBytes"/> instead. The default value is 16 MiB.
    /// </summary>
    [ByteRange("maximum message size (--max-message-size)", 1024, 256L * 1024 * 1024)]
    public long MaxMessageBytes { get; set; } = TransferLimits.DefaultMaxMessageBytes;

    /// <summary>The largest file a device may send, in bytes: 1 KiB to 1 TiB. The default value is 1 GiB.</summary>
    [ByteRange("maximum file size (--max-file-size)", 1024, 1L << 40)]
    public long MaxFileBytes { get; set; } = TransferLimits.DefaultMaxFileBytes;

    /// <summary>
    /// The bytes of files one device may have on the server: its stored files plus the files it is sending (reserved when
    /// a transfer starts). A transfer that would pass it is refused (0x97 Quota exceeded). 0 to 1 PiB; the default value
    /// is 5 GiB.
    /// </summary>
    [ByteRange("device file quota (--device-file-quota)", 0, 1L << 50)]
    public long DeviceFileQuotaBytes { get; set; } = TransferLimits.DefaultDeviceQuotaBytes;

    /// <summary>
    /// How long a transfer that receives no chunk is kept before it and its staged bytes are removed (the device then
    /// learns from <c>transfers/status</c> that it expired): 1 minute to 365 days. The default value is 24 hours.
    /// </summary>
    [DurationRange("incomplete transfer expiry (--incomplete-transfer-expiry)", "00:01:00", "365.00:00:00")]
    public TimeSpan IncompleteTransferExpiry { get; set; } = TransferLimits.DefaultIncompleteExpiry;

    // --- Issue 15, operators (sessions, accounts): add options here. ---

    /// <summary>
    /// How long a console session lasts after sign-in (<c>--session-lifetime</c>, default 12 h). A session also ends after
    /// an hour without a request, and at sign-out.
    /// </summary>
    [DurationRange("session lifetime (--session-lifetime)", "00:01:00", "30.00:00:00")]
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromHours(12);

    /// <summary>Reserved: keeps the option regions of issue 15 apart.</summary>
    internal const string OperatorOptionsEnd = "operators";

    // --- Issue 15, observability (metrics, health, logs): add options here. ---

    /// <summary>Serve Prometheus metrics at <c>/metrics</c> on the HTTP port (default on; <c>--no-metrics</c>).</summary>
    public bool MetricsEndpoint { get; set; } = true;

    /// <summary>When set, <c>/metrics</c> answers only requests with <c>Authorization: Bearer KEY</c> (<c>--metrics-key</c>).</summary>
    public string? MetricsKey { get; set; }

    /// <summary>Export metrics over OTLP to this collector (<c>--otlp-endpoint</c>; else <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> when set).</summary>
    public Uri? OtlpEndpoint { get; set; }

    /// <summary>Reserved: keeps the option regions of issue 15 apart.</summary>
    internal const string ObservabilityOptionsEnd = "observability";

    // --- Issue 15, console API (events, overview, device status): add options here. ---

    /// <summary>
    /// The most <c>GET /api/events</c> streams open at once (--max-event-streams); one more is refused with 503: 1 to
    /// 100000. The default value is 100.
    /// </summary>
    [CountRange("event streams (--max-event-streams)", 1, 100_000)]
    public int MaxEventStreams { get; set; } = 100;

    /// <summary>Reserved: keeps the option regions of issue 15 apart.</summary>
    internal const string ConsoleOptionsEnd = "console";

    // --- Issue 15, fleet overview (refusals, per-minute counts): add options here. ---

    /// <summary>
    /// How long the refusal log keeps a row (<c>--refusal-retention</c>): rows whose latest refusal is older are deleted by
    /// the hourly sweep. 1 minute to 365 days. The default value is 24 hours.
    /// </summary>
    [DurationRange("refusal retention (--refusal-retention)", "00:01:00", "365.00:00:00")]
    public TimeSpan RefusalRetention { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Reserved: keeps the option regions of issue 15 apart.</summary>
    internal const string OverviewOptionsEnd = "overview";

    // --- Issue 15, device status reports and history: add options here. ---

    /// <summary>Reserved: keeps the option regions of issue 15 apart.</summary>
    internal const string DeviceStatusOptionsEnd = "device-status";
}
