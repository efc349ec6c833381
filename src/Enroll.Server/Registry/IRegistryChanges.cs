namespace Enroll.Server.Registry;

/// <summary>
/// A change one instance made to the shared registry that others may hold in memory: a <see cref="Kind"/> (such as
/// <see cref="Keys"/>) and, where the kind has one, the <see cref="Id"/> of what changed.
/// </summary>
internal sealed record RegistryChange(string Kind, string? Id = null)
{
    /// <summary>The server keys changed (a rotation): reload them.</summary>
    public const string Keys = "keys";

    /// <summary>Any kind: changes may have been missed (the feed reconnected), so treat everything as changed.</summary>
    public const string Everything = "*";

    /// <summary>True when a holder of <paramref name="kind"/> must reload.</summary>
    public bool Concerns(string kind) => Kind == kind || Kind == Everything;
}

/// <summary>
/// The registry's change feed: an instance announces what it changed, and every instance on the same registry (itself
/// included) observes it. Delivery is prompt but best-effort — a listener that reconnects reports
/// <see cref="RegistryChange.Everything"/>, so an observer reloads what it holds rather than trusting it saw each change.
/// SQLite: in-process (<see cref="InProcessRegistryChanges"/>, one instance per database file). PostgreSQL:
/// <c>NOTIFY enroll_changes</c> (<see cref="PostgresRegistryChanges"/>).
/// </summary>
internal interface IRegistryChanges
{
    /// <summary>Tells every instance that <paramref name="change"/> happened; call it after the change committed.</summary>
    Task AnnounceAsync(RegistryChange change, CancellationToken cancellationToken = default);

    /// <summary>Calls <paramref name="observer"/> with every change from now on, until the returned handle is disposed.</summary>
    IDisposable Observe(Func<RegistryChange, Task> observer);
}
