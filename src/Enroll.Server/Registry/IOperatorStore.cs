namespace Enroll.Server.Registry;

/// <summary>
/// Operator accounts and their console sessions (issue 15). Keys and session cookies are never stored, only their
/// SHA-256 (hex), so a copy of the database signs no one in. Sessions live here, not in memory, so every instance behind a
/// load balancer accepts every session's cookie.
/// </summary>
internal interface IOperatorStore
{
    /// <summary>Adds <paramref name="account"/>; false when an operator of that name exists (a removed one too: names are not reused).</summary>
    Task<bool> AddOperatorAsync(OperatorAccount account, CancellationToken cancellationToken = default);

    /// <summary>Every operator, removed ones included, by name.</summary>
    Task<IReadOnlyList<OperatorAccount>> ListOperatorsAsync(CancellationToken cancellationToken = default);

    /// <summary>The operator whose key hashes to <paramref name="keyHash"/>, or null (none, or removed).</summary>
    Task<OperatorAccount?> FindOperatorByKeyHashAsync(string keyHash, CancellationToken cancellationToken = default);

    /// <summary>Marks <paramref name="name"/> removed at <paramref name="at"/> and deletes its sessions; false when there is no such operator still active.</summary>
    Task<bool> RemoveOperatorAsync(string name, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Stores a new session.</summary>
    Task CreateSessionAsync(ConsoleSession session, CancellationToken cancellationToken = default);

    /// <summary>
    /// The session whose cookie hashes to <paramref name="idHash"/>, or null when there is none, it expired at
    /// <paramref name="now"/>, it was idle (not seen) since <paramref name="idleSince"/>, or its operator was removed.
    /// </summary>
    Task<ConsoleSession?> FindSessionAsync(string idHash, DateTimeOffset now, DateTimeOffset idleSince, CancellationToken cancellationToken = default);

    /// <summary>Sets the session's last_seen to <paramref name="at"/>.</summary>
    Task TouchSessionAsync(string idHash, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Deletes one session (sign-out); false when there was none.</summary>
    Task<bool> DeleteSessionAsync(string idHash, CancellationToken cancellationToken = default);

    /// <summary>Deletes every session of <paramref name="name"/>; returns how many.</summary>
    Task<int> DeleteOperatorSessionsAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Deletes the sessions expired at <paramref name="now"/> or idle since <paramref name="idleSince"/>; returns how many.</summary>
    Task<int> PruneSessionsAsync(DateTimeOffset now, DateTimeOffset idleSince, CancellationToken cancellationToken = default);
}

/// <summary>An operator account row: the key is kept as its SHA-256 only.</summary>
internal sealed record OperatorAccount(string Name, string KeyHash, DateTimeOffset CreatedAt, string? CreatedBy, DateTimeOffset? RemovedAt);

/// <summary>A console session row: the cookie is kept as its SHA-256 only.</summary>
internal sealed record ConsoleSession(string IdHash, string Operator, bool IsAdmin, string CsrfToken, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt, DateTimeOffset LastSeen);
