using Enroll.Protocol.Admin;
using static Enroll.Server.Registry.OperatorRows;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    // As in SqliteRegistry: not expired ($2), seen since the idle limit ($3), admin or an operator not removed.
    private const string LiveSession =
        "expires_at > $2 AND last_seen > $3 AND (is_admin OR EXISTS (SELECT 1 FROM operators o WHERE o.name = console_sessions.operator AND o.removed_at IS NULL))";

    public async Task<bool> AddOperatorAsync(OperatorAccount account, CancellationToken cancellationToken = default) =>
        await WriteAsync(
            $"INSERT INTO operators ({OperatorColumns}) VALUES ($1, $2, $3, $4::text, NULL) ON CONFLICT DO NOTHING",
            cancellationToken,
            account.Name,
            account.KeyHash,
            ToUnix(account.CreatedAt),
            account.CreatedBy).ConfigureAwait(false) == 1;

    public async Task<IReadOnlyList<OperatorAccount>> ListOperatorsAsync(CancellationToken cancellationToken = default) =>
        await ReadAsync($"SELECT {OperatorColumns} FROM operators ORDER BY name", ReadOperator, cancellationToken).ConfigureAwait(false);

    public async Task<OperatorAccount?> FindOperatorByKeyHashAsync(string keyHash, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {OperatorColumns} FROM operators WHERE key_hash = $1 AND removed_at IS NULL", ReadOperator, cancellationToken, keyHash).ConfigureAwait(false)).FirstOrDefault();

    public async Task<bool> RemoveOperatorAsync(string name, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        // One statement: the account is marked and its sessions deleted together.
        (await ReadAsync(
            """
            WITH removed AS (UPDATE operators SET removed_at = $2 WHERE name = $1 AND removed_at IS NULL RETURNING name),
                 ended AS (DELETE FROM console_sessions WHERE operator IN (SELECT name FROM removed) AND NOT is_admin)
            SELECT count(*) FROM removed
            """,
            r => r.GetInt64(0),
            cancellationToken,
            name,
            ToUnix(at)).ConfigureAwait(false)).Single() == 1;

    public Task CreateSessionAsync(ConsoleSession session, CancellationToken cancellationToken = default) =>
        WriteAsync(
            $"INSERT INTO console_sessions ({SessionColumns}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            cancellationToken,
            session.IdHash,
            session.Operator,
            session.IsAdmin,
            session.CsrfToken,
            ToUnix(session.CreatedAt),
            ToUnix(session.ExpiresAt),
            ToUnix(session.LastSeen));

    public async Task<ConsoleSession?> FindSessionAsync(string idHash, DateTimeOffset now, DateTimeOffset idleSince, CancellationToken cancellationToken = default) =>
        (await ReadAsync(
            $"SELECT {SessionColumns} FROM console_sessions WHERE id_hash = $1 AND {LiveSession}",
            ReadSession,
            cancellationToken,
            idHash,
            ToUnix(now),
            ToUnix(idleSince)).ConfigureAwait(false)).FirstOrDefault();

    public Task TouchSessionAsync(string idHash, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        WriteAsync("UPDATE console_sessions SET last_seen = GREATEST(last_seen, $2) WHERE id_hash = $1", cancellationToken, idHash, ToUnix(at));

    public async Task<bool> DeleteSessionAsync(string idHash, CancellationToken cancellationToken = default) =>
        await WriteAsync("DELETE FROM console_sessions WHERE id_hash = $1", cancellationToken, idHash).ConfigureAwait(false) == 1;

    public Task<int> DeleteOperatorSessionsAsync(string name, CancellationToken cancellationToken = default) =>
        WriteAsync("DELETE FROM console_sessions WHERE operator = $1", cancellationToken, name);

    public Task<int> PruneSessionsAsync(DateTimeOffset now, DateTimeOffset idleSince, CancellationToken cancellationToken = default) =>
        WriteAsync("DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen <= $2", cancellationToken, ToUnix(now), ToUnix(idleSince));

    public async Task<long> AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken = default) =>
        (await ReadAsync(
            "INSERT INTO audit_log (at, operator, action, target, remote, status, detail) VALUES ($1, $2, $3, $4::text, $5::text, $6, $7::text) RETURNING id",
            r => r.GetInt64(0),
            cancellationToken,
            ToUnix(entry.At),
            entry.Operator,
            entry.Action,
            entry.Target,
            entry.Remote,
            entry.Status,
            entry.Detail).ConfigureAwait(false)).Single();

    public async Task<IReadOnlyList<AuditEntry>> ListAuditAsync(int limit, long? before, string? operatorName, string? action, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            $"SELECT {AuditColumns} FROM audit_log WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR operator = $2) AND ($3::text IS NULL OR action = $3) ORDER BY id DESC LIMIT $4",
            ReadAudit,
            cancellationToken,
            before,
            operatorName,
            action,
            limit).ConfigureAwait(false);
}
