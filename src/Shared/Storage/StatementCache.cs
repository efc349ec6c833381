using Microsoft.Data.Sqlite;

namespace Enroll.Shared.Storage;

/// <summary>
/// Prepared statements kept per connection, keyed by their SQL: SQLite parses and plans a statement once, not on every
/// execution. A cache belongs to one connection and is used by one thread at a time.
/// </summary>
internal static class StatementCache
{
    public static SqliteCommand Get(Dictionary<string, SqliteCommand> cache, SqliteConnection connection, string sql, (string Name, object? Value)[] parameters)
    {
        if (!cache.TryGetValue(sql, out var command))
        {
            command = connection.CreateCommand();
            command.CommandText = sql;
            foreach (var (name, _) in parameters)
            {
                command.Parameters.Add(new SqliteParameter { ParameterName = name });
            }

            cache[sql] = command;
        }

        foreach (var (name, value) in parameters)
        {
            command.Parameters[name].Value = value ?? DBNull.Value;
        }

        return command;
    }

    public static void Dispose(Dictionary<string, SqliteCommand> cache)
    {
        foreach (var command in cache.Values)
        {
            command.Dispose();
        }

        cache.Clear();
    }
}
