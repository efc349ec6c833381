namespace Enroll.Device;

/// <summary>
/// The faults the device is in right now, one per component at most. Background loops report a fault when they start
/// backing off and clear it when they work again, so a person (or <c>enroll device status</c>) can see which fault the
/// device is in instead of guessing from logs.
/// </summary>
public sealed class DeviceHealth
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _timeProvider;
    private readonly Dictionary<string, DeviceFault> _faults = new(StringComparer.Ordinal);

    /// <summary>Creates an empty health record.</summary>
    public DeviceHealth(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _timeProvider = timeProvider;
    }

    /// <summary>Raised after every change (outside the lock, on the reporting thread).</summary>
    public event EventHandler? Changed;

    /// <summary>True when no component reports a fault.</summary>
    public bool IsHealthy
    {
        get
        {
            lock (_lock)
            {
                return _faults.Count == 0;
            }
        }
    }

    /// <summary>The current faults, ordered by component.</summary>
    public IReadOnlyList<DeviceFault> Faults
    {
        get
        {
            lock (_lock)
            {
                return [.. _faults.Values.OrderBy(f => f.Component, StringComparer.Ordinal)];
            }
        }
    }

    /// <summary>The fault <paramref name="component"/> is in, if any.</summary>
    public DeviceFault? FaultOf(string component)
    {
        lock (_lock)
        {
            return _faults.GetValueOrDefault(component);
        }
    }

    /// <summary>
    /// Records that <paramref name="component"/> is in a fault. The same kind reported again counts an occurrence and keeps
    /// its start time; another kind replaces it.
    /// </summary>
    public void Report(string component, DeviceFaultKind kind, string message)
    {
        ArgumentException.ThrowIfNullOrEmpty(component);
        ArgumentNullException.ThrowIfNull(message);
        lock (_lock)
        {
            _faults[component] = _faults.TryGetValue(component, out var existing) && existing.Kind == kind
                ? existing with { Message = message, Occurrences = existing.Occurrences + 1 }
                : new DeviceFault(component, kind, message, _timeProvider.GetUtcNow(), 1);
        }

        Changed?.Invoke(this, EventArgs.Empty);
    }

    /// <summary>Records that <paramref name="component"/> works again.</summary>
    public void Clear(string component)
    {
        bool removed;
        lock (_lock)
        {
            removed = _faults.Remove(component);
        }

        if (removed)
        {
            Changed?.Invoke(this, EventArgs.Empty);
        }
    }
}
