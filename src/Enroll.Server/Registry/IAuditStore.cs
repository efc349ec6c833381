using Enroll.Protocol.Admin;

namespace Enroll.Server.Registry;

/// <summary>
/// The audit log: every operator action, who, when, what and from where (issue 15). Append-only and kept forever; an
/// operator who wants a retention deletes old rows with SQL (docs/console.md).
/// </summary>
internal interface IAuditStore
{
    /// <summary>Appends <paramref name="entry"/> (its <see cref="AuditEntry.Id"/> is ignored); returns the ID it was given.</summary>
    Task<long> AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken = default);

    /// <summary>
    /// At most <paramref name="limit"/> entries, newest first, with an ID below <paramref name="before"/> when given, of
    /// <paramref name="operatorName"/> and <paramref name="action"/> when given.
    /// </summary>
    Task<IReadOnlyList<AuditEntry>> ListAuditAsync(int limit, long? before, string? operatorName, string? action, CancellationToken cancellationToken = default);
}
