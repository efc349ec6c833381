using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Messages;

/// <summary>The answer to a <see cref="RegistrationRequest"/>.</summary>
public sealed record RegistrationResponse : IEnrollResponse
{
    /// <summary>The device's Device ID.</summary>
    public string? DeviceId { get; init; }

    /// <summary>The access token: the device's MQTT password (username = Device ID).</summary>
    public string? JwtToken { get; init; }

    /// <summary>When the access token expires.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>A Registration Token, issued when the device registered with a Provisioning Token.</summary>
    public string? RegistrationToken { get; init; }

    /// <summary>When <see cref="RegistrationToken"/> expires.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? RegistrationTokenExpiresAt { get; init; }

    /// <summary>Set when the Registration Token used is close to expiry: the device should refresh it now.</summary>
    public bool? RefreshRegistrationToken { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}
