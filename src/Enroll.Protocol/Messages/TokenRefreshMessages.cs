using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Messages;

/// <summary>Exchanges a Registration Token for a new one, published to <c>enroll/v1/tokens/refresh</c> (SPEC §2.3).</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record TokenRefreshRequest : IDeviceRequest
{
    /// <summary>The current Registration Token. Required.</summary>
    public string? RegistrationToken { get; init; }

    /// <summary>The device's Client ID. Required.</summary>
    public string? ClientId { get; init; }

    /// <summary>The Device ID the token belongs to.</summary>
    public string? DeviceId { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }
}

/// <summary>The answer to a <see cref="TokenRefreshRequest"/>.</summary>
public sealed record TokenRefreshResponse : IEnrollResponse
{
    /// <summary>The Device ID the token belongs to.</summary>
    public string? DeviceId { get; init; }

    /// <summary>The new Registration Token.</summary>
    public string? RegistrationToken { get; init; }

    /// <summary>When the new token expires.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}
