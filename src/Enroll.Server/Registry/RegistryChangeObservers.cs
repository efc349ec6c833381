using System.Collections.Immutable;

namespace Enroll.Server.Registry;

/// <summary>The observers of a change feed, called one after the other; one that throws does not stop the others.</summary>
internal sealed class RegistryChangeObservers
{
    private ImmutableList<Func<RegistryChange, Task>> _observers = [];

    public IDisposable Add(Func<RegistryChange, Task> observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        ImmutableInterlocked.Update(ref _observers, list => list.Add(observer));
        return new Subscription(() => ImmutableInterlocked.Update(ref _observers, list => list.Remove(observer)));
    }

    /// <summary>Calls every observer with <paramref name="change"/>; the failures, if any, are returned for the caller to log.</summary>
    public async Task<IReadOnlyList<Exception>> NotifyAsync(RegistryChange change)
    {
        List<Exception>? failures = null;
        foreach (var observer in _observers)
        {
            try
            {
                await observer(change).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // one observer's failure must not keep the change from the others; the caller logs it
            catch (Exception ex)
#pragma warning restore CA1031
            {
                (failures ??= []).Add(ex);
            }
        }

        return (IReadOnlyList<Exception>?)failures ?? [];
    }

    private sealed class Subscription(Action remove) : IDisposable
    {
        private Action? _remove = remove;

        public void Dispose() => Interlocked.Exchange(ref _remove, null)?.Invoke();
    }
}
