namespace Enroll.Device.Registration;

/// <summary>
/// The device lifecycle as an explicit state machine: every change goes through <see cref="TransitionTo"/>, which refuses
/// changes the lifecycle does not allow and raises <see cref="Changed"/>.
/// </summary>
internal sealed class DeviceStateMachine
{
    private static readonly Dictionary<DeviceState, DeviceState[]> Allowed = new()
    {
        [DeviceState.Stopped] = [DeviceState.Connecting, DeviceState.Registered, DeviceState.Unprovisioned, DeviceState.Failed],
        [DeviceState.Unprovisioned] = [DeviceState.Connecting, DeviceState.Failed],
        [DeviceState.Connecting] = [DeviceState.Registering, DeviceState.WaitingToRetry, DeviceState.Failed, DeviceState.Unprovisioned],
        [DeviceState.Registering] = [DeviceState.Registered, DeviceState.WaitingToRetry, DeviceState.Pending, DeviceState.Registering, DeviceState.Connecting, DeviceState.Failed, DeviceState.Unprovisioned],
        [DeviceState.WaitingToRetry] = [DeviceState.Registering, DeviceState.Connecting, DeviceState.Pending, DeviceState.Failed],
        [DeviceState.Pending] = [DeviceState.Pending, DeviceState.Registering, DeviceState.WaitingToRetry, DeviceState.Connecting, DeviceState.Failed],
        [DeviceState.Registered] = [DeviceState.Registered, DeviceState.Registering, DeviceState.Connecting, DeviceState.Pending, DeviceState.Failed],
        [DeviceState.Failed] = [DeviceState.Connecting, DeviceState.Registering, DeviceState.Registered, DeviceState.Failed],
    };

    private readonly Lock _lock = new();
    private DeviceStatus _current;

    public DeviceStateMachine(string? clientId) => _current = new DeviceStatus { State = DeviceState.Stopped, ClientId = clientId };

    public event EventHandler<DeviceStatusChangedEventArgs>? Changed;

    public DeviceStatus Current
    {
        get
        {
            lock (_lock)
            {
                return _current;
            }
        }
    }

    public static bool CanTransition(DeviceState from, DeviceState to) =>
        to == DeviceState.Stopped || (Allowed.TryGetValue(from, out var targets) && targets.Contains(to));

    /// <summary>Moves to the state in <paramref name="update"/>'s result; throws when the lifecycle forbids the change.</summary>
    public DeviceStatus TransitionTo(DeviceState state, Func<DeviceStatus, DeviceStatus>? update = null)
    {
        DeviceStatus previous;
        DeviceStatus next;
        lock (_lock)
        {
            previous = _current;
            if (!CanTransition(previous.State, state))
            {
                throw new InvalidOperationException($"A device cannot go from {previous.State} to {state}.");
            }

            next = (update?.Invoke(previous) ?? previous) with { State = state };
            if (state != DeviceState.WaitingToRetry)
            {
                next = next with { RetryIn = null };
            }

            _current = next;
        }

        Changed?.Invoke(this, new DeviceStatusChangedEventArgs(previous, next));
        return next;
    }
}
