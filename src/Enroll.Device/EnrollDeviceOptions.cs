using System.ComponentModel.DataAnnotations;
using System.Diagnostics.CodeAnalysis;
using Enroll.Protocol;

namespace Enroll.Device;

/// <summary>
/// Settings of an Enroll device, bound from configuration (section <c>Enroll:Device</c>) and validated at start.
/// </summary>
public sealed class EnrollDeviceOptions
{
    // The attributes below are read by the source-generated EnrollDeviceOptionsValidator, which checks with its own copies
    // of Range and MaxLength: nothing instantiates these through reflection, so trimming cannot break them.
    private const string ValidatedBySourceGenerator = "Checked by the source-generated EnrollDeviceOptionsValidator, never through reflection";

    /// <summary>The configuration section the options bind to.</summary>
    public const string SectionName = "Enroll:Device";

    /// <summary>The broker, as <c>mqtt://host:port</c> or <c>mqtts://host:port</c>. The default value is <c>mqtt://127.0.0.1:1883</c>.</summary>
    [Required]
    public Uri Broker { get; set; } = new("mqtt://127.0.0.1:1883");

    /// <summary>
    /// A PEM file of the CA certificates the broker's TLS certificate must chain to (for <c>mqtts://</c>). The host name
    /// in <see cref="Broker"/> must match the certificate too. The default value is null: the system's trusted roots.
    /// </summary>
    public string? TlsCaFile { get; set; }

    /// <summary>
    /// A PEM client certificate for mTLS, with <see cref="ClientKeyFile"/>. Signed by a CA the server trusts and issued to
    /// <see cref="ClientId"/> (its common name), it lets the device register without a Provisioning Token.
    /// </summary>
    public string? ClientCertificateFile { get; set; }

    /// <summary>The PEM private key of <see cref="ClientCertificateFile"/>.</summary>
    public string? ClientKeyFile { get; set; }

    /// <summary>The identifier the device chose itself (serial number, MAC); also its MQTT client ID. Required.</summary>
    [Required]
    [RegularExpression(@"^[A-Za-z0-9\-_.:@]{1,128}$", ErrorMessage = "ClientId must be " + EnrollIdentifiers.Rule + ".")]
    public string ClientId { get; set; } = string.Empty;

    /// <summary>The organisation the device joins. Optional: the credential's organisation is used when absent.</summary>
    [RegularExpression(@"^[A-Za-z0-9\-_.:@]{1,128}$", ErrorMessage = "OrgId must be " + EnrollIdentifiers.Rule + ".")]
    public string? OrgId { get; set; }

    /// <summary>
    /// The Device ID to ask for in a provisioning operation; the server honours it when it is free and refuses with a
    /// <c>conflict</c> when another device has it. Without it the server assigns an ID.
    /// </summary>
    [RegularExpression(@"^[A-Za-z0-9\-_.:@]{1,128}$", ErrorMessage = "DesiredDeviceId must be " + EnrollIdentifiers.Rule + ".")]
    public string? DesiredDeviceId { get; set; }

    /// <summary>A human-friendly name shown to operators.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [MaxLength(256)]
    public string? DeviceName { get; set; }

    /// <summary>
    /// The Provisioning Token. With an auto-approve token the device registers in one request; otherwise it asks an
    /// operator to approve it. Stored in the device state once used, so later starts may omit it.
    /// </summary>
    public string? ProvisioningToken { get; set; }

    /// <summary>The folder that holds the device state (identity, tokens, outbox). The default value is <c>enroll-device</c>.</summary>
    [Required]
    public string StatePath { get; set; } = "enroll-device";

    /// <summary>MQTT quality of service for requests: 0, 1 or 2. The default value is 1.</summary>
    [Range(0, 2)]
    public int QualityOfService { get; set; } = 1;

    /// <summary>The MQTT protocol version. The default value is <see cref="MqttProtocol.V500"/>.</summary>
    public MqttProtocol ProtocolVersion { get; set; } = MqttProtocol.V500;

    /// <summary>How long to wait for the answer to one request before trying again. The default value is 10 seconds.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [Range(typeof(TimeSpan), "00:00:00.050", "00:10:00")]
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How many times a request is sent before giving up with a timeout. The default value is 8.</summary>
    [Range(1, 10_000)]
    public int MaxAttempts { get; set; } = 8;

    /// <summary>The first retry delay; later delays double. The default value is 1 second.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [Range(typeof(TimeSpan), "00:00:00.001", "01:00:00")]
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest delay between attempts. The default value is 60 seconds.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00")]
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Randomises retry delays so a fleet that lost its server does not come back in the same second. The default value
    /// is true; turn it off only to measure why it matters.
    /// </summary>
    public bool UseJitter { get; set; } = true;

    /// <summary>The issuer the device expects in the server's tokens. The default value is <c>enroll</c>.</summary>
    [Required]
    public string Issuer { get; set; } = ProtocolDefaults.Issuer;

    /// <summary>
    /// Check the signature, issuer, audience, type and expiry of every token the server returns, with the keys the server
    /// publishes on <c>enroll/v1/server/keys</c> (or <see cref="ServerKeysPath"/>). The default value is true.
    /// </summary>
    public bool ValidateServerTokens { get; set; } = true;

    /// <summary>
    /// A JWKS file with the server's signing keys. When set, only these keys are trusted and the keys published on the
    /// broker are ignored.
    /// </summary>
    public string? ServerKeysPath { get; set; }

    /// <summary>
    /// Encrypt every request end to end to the server's published encryption key (JWE ECDH-ES + A256GCM) and expect the
    /// answers encrypted back, so the broker sees no tokens or metadata in clear. The default value is false.
    /// </summary>
    public bool EncryptRequests { get; set; }

    /// <summary>Tolerated difference between the device's clock and the server's. The default value is 60 seconds.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The longest margin before expiry at which the access token is renewed. The renewal point scales with the token's
    /// lifetime: when about 20 % of it remains (±5 % jitter), at least this long before expiry where that is at most 20 %
    /// of the lifetime, and never sooner than 30 seconds (or half the lifetime) after issue. The default value is 5 minutes.
    /// </summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan AccessTokenRenewBefore { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>MQTT keep-alive period. The default value is 30 seconds.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan KeepAlive { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The most messages the outbox holds. The default value is 100,000.</summary>
    [Range(1, 100_000_000)]
    public int OutboxMaxMessages { get; set; } = 100_000;

    /// <summary>The most payload bytes the outbox holds. The default value is 64 MiB.</summary>
    [Range(1024, long.MaxValue)]
    public long OutboxMaxBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>What a send does when the outbox is full. The default value is <see cref="OutboxOverflowPolicy.Reject"/>.</summary>
    public OutboxOverflowPolicy OutboxOverflow { get; set; } = OutboxOverflowPolicy.Reject;

    /// <summary>
    /// How durable a send is when it returns. The default value is <see cref="OutboxDurability.Full"/>;
    /// <see cref="OutboxDurability.Relaxed"/> may lose the last sends on power loss.
    /// </summary>
    public OutboxDurability OutboxDurability { get; set; } = OutboxDurability.Full;

    /// <summary>
    /// Payloads larger than this many bytes are gzip-compressed when that makes them smaller (content encoding
    /// <c>gzip</c>); 0 turns compression off. The default value is 4096.
    /// </summary>
    [Range(0, int.MaxValue)]
    public int CompressAbove { get; set; } = 4096;

    /// <summary>How many published messages may wait for the broker's acknowledgement at once. The default value is 64.</summary>
    [Range(1, 65_535)]
    public int PublishWindow { get; set; } = 64;

    /// <summary>
    /// The largest message payload (after compression) <see cref="DeviceOutbox.SendAsync"/> accepts; a larger one is
    /// refused with <see cref="MessageTooLargeException"/>. A message that does not fit one packet (see
    /// <see cref="ChunkBytes"/>) is stored and sent as chunks and stored by the server as one message. The default value
    /// is 16 MiB (16,777,216 bytes, <see cref="Protocol.Transfers.TransferLimits.DefaultMaxMessageBytes"/>), the
    /// Enroll server's default maximum message size.
    /// </summary>
    [Range(1024, 256 * 1024 * 1024)]
    public int MaxMessageBytes { get; set; } = (int)Protocol.Transfers.TransferLimits.DefaultMaxMessageBytes;

    /// <summary>
    /// The payload bytes of one chunk: a message whose payload (after compression) is larger, or whose packet would not
    /// fit the broker's announced Maximum Packet Size, is sent in chunks of this size (smaller when the broker's limit
    /// needs it), and so is every file. The chunk size of a transfer is fixed when it is stored. The default value is
    /// 128 KiB (131,072 bytes, <see cref="Protocol.Transfers.TransferLimits.DefaultChunkBytes"/>).
    /// </summary>
    [Range(Protocol.Transfers.TransferLimits.MinChunkBytes, 64 * 1024 * 1024)]
    public int ChunkBytes { get; set; } = Protocol.Transfers.TransferLimits.DefaultChunkBytes;

    /// <summary>
    /// The largest file <see cref="DeviceOutbox.SendFileAsync(string, Stream, string?, CancellationToken)"/> accepts; a
    /// larger one is refused with <see cref="FileTooLargeException"/> (before copying when its length is known). The
    /// default value is 1 GiB (1,073,741,824 bytes, <see cref="Protocol.Transfers.TransferLimits.DefaultMaxFileBytes"/>).
    /// </summary>
    [Range(0, long.MaxValue)]
    public long MaxFileBytes { get; set; } = Protocol.Transfers.TransferLimits.DefaultMaxFileBytes;

    /// <summary>Include the host's network, storage, memory and OS facts in requests. The default value is true.</summary>
    public bool SendMetadata { get; set; } = true;

    /// <summary>
    /// Receive commands: subscribe to the device's command topic and ask for the pending commands on every connect. A
    /// process that connects only to deliver something (<c>enroll device report</c>) turns this off, so it never answers
    /// a command it has no handler for. The default value is true.
    /// </summary>
    public bool ReceiveCommands { get; set; } = true;

    /// <summary>
    /// How often, at most, the device reports its outbox (pending messages and bytes, oldest age, quarantined rows) to the
    /// server on <c>enroll/v1/devices/{device_id}/status</c>: once after it connects, then when the outbox changed, never
    /// more than once per interval. <see cref="TimeSpan.Zero"/> turns reporting off. The default value is 60 seconds.
    /// </summary>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = ValidatedBySourceGenerator)]
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan StatusReportInterval { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>MQTT protocol versions the device can speak.</summary>
public enum MqttProtocol
{
    /// <summary>MQTT 5.0: requests carry Response Topic and Correlation Data.</summary>
    V500,

    /// <summary>MQTT 3.1.1: requests carry <c>request_id</c> and answers come on the conventional response topic.</summary>
    V311,
}
