namespace Enroll.Device;

/// <summary>Who the device is after a successful start.</summary>
public sealed record DeviceIdentity
{
    /// <summary>The Device ID the server assigned.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The device's Client ID.</summary>
    public required string ClientId { get; init; }

    /// <summary>When the access token expires.</summary>
    public required DateTimeOffset AccessTokenExpiresAt { get; init; }

    /// <summary>When the Registration Token expires, if the device holds one.</summary>
    public DateTimeOffset? RegistrationTokenExpiresAt { get; init; }

    /// <summary>True when a stored, still valid access token made registration unnecessary.</summary>
    public bool RegistrationSkipped { get; init; }
}
