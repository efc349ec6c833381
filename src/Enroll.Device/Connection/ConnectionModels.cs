namespace Enroll.Device.Connection;

/// <summary>Who the device says it is when it connects: anonymous (only a client ID) or as its Device ID with an access token.</summary>
internal sealed record ConnectionCredentials(string ClientId, string? Username = null, string? Password = null)
{
    public bool IsAuthenticated => Username is not null;

    public static ConnectionCredentials Anonymous(string clientId) => new(clientId);

    public static ConnectionCredentials AsDevice(string clientId, string deviceId, string accessToken) => new(clientId, deviceId, accessToken);

    // Never print the password.
    public override string ToString() => IsAuthenticated ? $"{ClientId} as {Username}" : $"{ClientId} (anonymous)";
}

/// <summary>A message to publish.</summary>
internal sealed record OutgoingMessage(string Topic, ReadOnlyMemory<byte> Payload, int QualityOfService)
{
    public string? ResponseTopic { get; init; }

    public byte[]? CorrelationData { get; init; }

    public string? ContentType { get; init; }

    public IReadOnlyList<KeyValuePair<string, string>>? UserProperties { get; init; }

    /// <summary>MQTT 5 Message Expiry Interval in seconds: after it, the message is of no use to its receiver.</summary>
    public uint? ExpirySeconds { get; init; }
}

/// <summary>A message the broker delivered.</summary>
internal sealed record IncomingMessage(string Topic, ReadOnlyMemory<byte> Payload)
{
    public byte[]? CorrelationData { get; init; }

    public bool Retained { get; init; }
}
