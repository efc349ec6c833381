using Enroll.Protocol.Admin;
using static Enroll.Server.Registry.OperatorRows;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    // A session is live while not expired, seen since the idle limit, and signed in with the admin key or by an operator not removed.
    private const string LiveSession =
        "expires_at > $now AND last_seen > $idle AND (is_admin = 1 OR EXISTS (SELECT 1 FROM operators o WHERE o.name = console_sessions.operator AND o.removed_at IS NULL))";

    public Task<bool> AddOperatorAsync(OperatorAccount account, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                $"INSERT INTO operators ({OperatorColumns}) VALUES ($name, $hash, $created, $by, NULL) ON CONFLICT DO NOTHING",
                ("$name", account.Name),
                ("$hash", account.KeyHash),
                ("$created", ToUnix(account.CreatedAt)),
                ("$by", account.CreatedBy)) == 1,
            isolated: false,
            cancellationToken);

    public Task<IReadOnlyList<OperatorAccount>> ListOperatorsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<OperatorAccount>>(Query($"SELECT {OperatorColumns} FROM operators ORDER BY name", ReadOperator));

    public Task<OperatorAccount?> FindOperatorByKeyHashAsync(string keyHash, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query($"SELECT {OperatorColumns} FROM operators WHERE key_hash = $hash AND removed_at IS NULL", ReadOperator, ("$hash", keyHash)).FirstOrDefault());

    public Task<bool> RemoveOperatorAsync(string name, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                if (context.Execute("UPDATE operators SET removed_at = $at WHERE name = $name AND removed_at IS NULL", ("$name", name), ("$at", ToUnix(at))) == 0)
                {
                    return false;
                }

                context.Execute("DELETE FROM console_sessions WHERE operator = $name AND is_admin = 0", ("$name", name));
                return true;
            },
            cancellationToken);

    public Task CreateSessionAsync(ConsoleSession session, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                $"INSERT INTO console_sessions ({SessionColumns}) VALUES ($id, $operator, $admin, $csrf, $created, $expires, $seen)",
                ("$id", session.IdHash),
                ("$operator", session.Operator),
                ("$admin", session.IsAdmin ? 1 : 0),
                ("$csrf", session.CsrfToken),
                ("$created", ToUnix(session.CreatedAt)),
                ("$expires", ToUnix(session.ExpiresAt)),
                ("$seen", ToUnix(session.LastSeen))),
            isolated: false,
            cancellationToken);

    public Task<ConsoleSession?> FindSessionAsync(string idHash, DateTimeOffset now, DateTimeOffset idleSince, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(
            $"SELECT {SessionColumns} FROM console_sessions WHERE id_hash = $id AND {LiveSession}",
            ReadSession,
            ("$id", idHash),
            ("$now", ToUnix(now)),
            ("$idle", ToUnix(idleSince))).FirstOrDefault());

    public Task TouchSessionAsync(string idHash, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute("UPDATE console_sessions SET last_seen = MAX(last_seen, $at) WHERE id_hash = $id", ("$id", idHash), ("$at", ToUnix(at))),
            isolated: false,
            cancellationToken);

    public Task<bool> DeleteSessionAsync(string idHash, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute("DELETE FROM console_sessions WHERE id_hash = $id", ("$id", idHash)) == 1,
            isolated: false,
            cancellationToken);

    public Task<int> DeleteOperatorSessionsAsync(string name, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute("DELETE FROM console_sessions WHERE operator = $name", ("$name", name)),
            isolated: false,
            cancellationToken);

    public Task<int> PruneSessionsAsync(DateTimeOffset now, DateTimeOffset idleSince, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute("DELETE FROM console_sessions WHERE expires_at <= $now OR last_seen <= $idle", ("$now", ToUnix(now)), ("$idle", ToUnix(idleSince))),
            isolated: false,
            cancellationToken);

    public Task<long> AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                using var command = context.Command(
                    "INSERT INTO audit_log (at, operator, action, target, remote, status, detail) VALUES ($at, $operator, $action, $target, $remote, $status, $detail) RETURNING id",
                    ("$at", ToUnix(entry.At)),
                    ("$operator", entry.Operator),
                    ("$action", entry.Action),
                    ("$target", entry.Target),
                    ("$remote", entry.Remote),
                    ("$status", entry.Status),
                    ("$detail", entry.Detail));
                return (long)command.ExecuteScalar()!;
            },
            isolated: false,
            cancellationToken);

    public Task<IReadOnlyList<AuditEntry>> ListAuditAsync(int limit, long? before, string? operatorName, string? action, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<AuditEntry>>(Query(
            $"SELECT {AuditColumns} FROM audit_log WHERE ($before IS NULL OR id < $before) AND ($operator IS NULL OR operator = $operator) AND ($action IS NULL OR action = $action) ORDER BY id DESC LIMIT $limit",
            ReadAudit,
            ("$before", before),
            ("$operator", operatorName),
            ("$action", action),
            ("$limit", limit)));
}
