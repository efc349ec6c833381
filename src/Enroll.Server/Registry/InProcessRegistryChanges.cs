using Enroll.Server.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Registry;

/// <summary>
/// The change feed of a registry only this process uses (SQLite: the data folder is locked to one server), so an
/// announcement goes straight to this process's observers.
/// </summary>
internal sealed class InProcessRegistryChanges(ILogger<InProcessRegistryChanges> logger) : IRegistryChanges
{
    private readonly RegistryChangeObservers _observers = new();

    public async Task AnnounceAsync(RegistryChange change, CancellationToken cancellationToken = default)
    {
        foreach (var failure in await _observers.NotifyAsync(change).ConfigureAwait(false))
        {
            Log.RegistryChangeObserverFailed(logger, change.Kind, failure);
        }
    }

    public IDisposable Observe(Func<RegistryChange, Task> observer) => _observers.Add(observer);
}
