namespace Enroll.Server.Handlers;

/// <summary>A request as it arrived from the broker, with who sent it.</summary>
internal sealed record IncomingRequest(string Topic, ReadOnlyMemory<byte> Payload)
{
    /// <summary>The MQTT 5 Response Topic, when the client set one.</summary>
    public string? ResponseTopic { get; init; }

    public byte[]? CorrelationData { get; init; }

    /// <summary>The sender's MQTT client ID, when the transport knows it (embedded broker).</summary>
    public string? SenderClientId { get; init; }

    /// <summary>The Device ID the sender authenticated as, when the transport knows it.</summary>
    public string? SenderDeviceId { get; init; }

    /// <summary>The sender's IP address, when the transport knows it.</summary>
    public string? SenderAddress { get; init; }

    /// <summary>The client certificate the sender connected with (mTLS), already checked against the configured CA.</summary>
    public CertificateIdentity? SenderCertificate { get; init; }

    public DateTimeOffset ReceivedAt { get; init; }

    /// <summary>When the request stops being of use (its MQTT 5 Message Expiry Interval); null when it has none.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>The expiry time of a request received at <paramref name="receivedAt"/> with <paramref name="expirySeconds"/>.</summary>
    public static DateTimeOffset? Expiry(DateTimeOffset receivedAt, uint expirySeconds) =>
        expirySeconds > 0 ? receivedAt + TimeSpan.FromSeconds(expirySeconds) : null;
}

/// <summary>Who a verified client certificate vouches for: one MQTT client ID (its common name) in one organisation.</summary>
internal sealed record CertificateIdentity(string ClientId, string OrgId);

/// <summary>Who sent a request and when; handed to handlers.</summary>
internal sealed record RequestContext(string? SenderClientId, string? SenderDeviceId, DateTimeOffset ReceivedAt)
{
    public string? SenderAddress { get; init; }

    public CertificateIdentity? SenderCertificate { get; init; }

    /// <summary>
    /// For a device-scoped request (<see cref="Protocol.Requests.EnrollRequest.IsDeviceScoped"/>), the Device ID its topic
    /// names: the device it is for and from, as the broker's access rules vouch.
    /// </summary>
    public string? TopicDeviceId { get; init; }

    /// <summary>The device a device-scoped request is for; throws for any other request (a handler bug).</summary>
    public string DeviceId => TopicDeviceId ?? throw new InvalidOperationException("not a device-scoped request");
}
