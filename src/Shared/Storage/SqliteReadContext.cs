using Microsoft.Data.Sqlite;

namespace Enroll.Shared.Storage;

/// <summary>A pooled read connection with its prepared statements; see <see cref="SqliteDatabase.Read{T}"/>.</summary>
internal sealed class SqliteReadContext(SqliteConnection connection) : IDisposable
{
    private readonly Dictionary<string, SqliteCommand> _prepared = new(StringComparer.Ordinal);

    public SqliteConnection Connection { get; } = connection;

    /// <summary>The prepared statement for <paramref name="sql"/> with <paramref name="parameters"/> bound. Dispose its reader, not it.</summary>
    public SqliteCommand Command(string sql, params (string Name, object? Value)[] parameters) =>
        StatementCache.Get(_prepared, Connection, sql, parameters);

    public void Dispose()
    {
        StatementCache.Dispose(_prepared);
        Connection.Dispose();
    }
}
