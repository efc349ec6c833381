namespace Enroll.Device;

/// <summary>Where a device stands in its lifecycle.</summary>
public enum DeviceState
{
    /// <summary>The service is not running.</summary>
    Stopped,

    /// <summary>The device has no identity and no credential to get one.</summary>
    Unprovisioned,

    /// <summary>Connecting to the broker.</summary>
    Connecting,

    /// <summary>A request is on its way to the server.</summary>
    Registering,

    /// <summary>Waiting before the next attempt.</summary>
    WaitingToRetry,

    /// <summary>A provisioning operation waits for an operator's decision.</summary>
    Pending,

    /// <summary>The device has a Device ID and a valid access token.</summary>
    Registered,

    /// <summary>Registration failed for good; see <see cref="DeviceStatus.Failure"/>.</summary>
    Failed,
}

/// <summary>A snapshot of the device's state, raised with every change.</summary>
public sealed record DeviceStatus
{
    /// <summary>The state.</summary>
    public required DeviceState State { get; init; }

    /// <summary>The Client ID.</summary>
    public string? ClientId { get; init; }

    /// <summary>The Device ID, once known.</summary>
    public string? DeviceId { get; init; }

    /// <summary>The pending provisioning operation, while <see cref="DeviceState.Pending"/>.</summary>
    public string? OperationId { get; init; }

    /// <summary>When the access token expires.</summary>
    public DateTimeOffset? AccessTokenExpiresAt { get; init; }

    /// <summary>When the Registration Token expires.</summary>
    public DateTimeOffset? RegistrationTokenExpiresAt { get; init; }

    /// <summary>The current attempt of the request under way.</summary>
    public int Attempt { get; init; }

    /// <summary>While <see cref="DeviceState.WaitingToRetry"/>: how long until the next attempt.</summary>
    public TimeSpan? RetryIn { get; init; }

    /// <summary>Why the device failed, while <see cref="DeviceState.Failed"/>, or why the last attempt failed.</summary>
    public string? Failure { get; init; }
}

/// <summary>Carries the new status of a state change.</summary>
public sealed class DeviceStatusChangedEventArgs(DeviceStatus previous, DeviceStatus current) : EventArgs
{
    /// <summary>The status before the change.</summary>
    public DeviceStatus Previous { get; } = previous;

    /// <summary>The status after the change.</summary>
    public DeviceStatus Current { get; } = current;
}
