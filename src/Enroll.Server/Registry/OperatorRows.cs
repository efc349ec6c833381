using System.Data.Common;
using Enroll.Protocol.Admin;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

/// <summary>The operator, session and audit rows as both stores select them.</summary>
internal static class OperatorRows
{
    public const string OperatorColumns = "name, key_hash, created_at, created_by, removed_at";

    public const string SessionColumns = "id_hash, operator, is_admin, csrf_token, created_at, expires_at, last_seen";

    public const string AuditColumns = "id, at, operator, action, target, remote, status, detail";

    public static OperatorAccount ReadOperator(DbDataReader r) =>
        new(r.GetString(0), r.GetString(1), FromUnix(r.GetInt64(2)), StringOrNull(r, 3), FromUnixNullable(r, 4));

    // SQLite keeps the flag as an integer, PostgreSQL as a boolean.
    public static ConsoleSession ReadSession(DbDataReader r) =>
        new(r.GetString(0), r.GetString(1), Convert.ToBoolean(r.GetValue(2), System.Globalization.CultureInfo.InvariantCulture), r.GetString(3), FromUnix(r.GetInt64(4)), FromUnix(r.GetInt64(5)), FromUnix(r.GetInt64(6)));

    public static AuditEntry ReadAudit(DbDataReader r) => new()
    {
        Id = r.GetInt64(0),
        At = FromUnix(r.GetInt64(1)),
        Operator = r.GetString(2),
        Action = r.GetString(3),
        Target = StringOrNull(r, 4),
        Remote = StringOrNull(r, 5),
        Status = r.GetInt32(6),
        Detail = StringOrNull(r, 7),
    };
}
