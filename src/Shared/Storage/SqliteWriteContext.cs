using Microsoft.Data.Sqlite;

namespace Enroll.Shared.Storage;

/// <summary>
/// The writer connection and its open transaction, handed to each write operation of a group commit. Statements used
/// often can be prepared once (<see cref="Prepared"/>); state shared by the operations of one batch lives in
/// <see cref="BatchItems"/>, and work to do once per batch just before the commit goes to <see cref="BeforeCommit"/>.
/// </summary>
internal sealed class SqliteWriteContext
{
    private readonly Dictionary<string, SqliteCommand> _prepared;
    private readonly List<Action<SqliteWriteContext>> _beforeCommit = [];

    internal SqliteWriteContext(SqliteConnection connection, SqliteTransaction transaction, Dictionary<string, SqliteCommand> prepared)
    {
        Connection = connection;
        Transaction = transaction;
        _prepared = prepared;
    }

    public SqliteConnection Connection { get; }

    public SqliteTransaction Transaction { get; }

    /// <summary>State the operations of this batch share (for example running totals).</summary>
    public Dictionary<string, object> BatchItems { get; } = new(StringComparer.Ordinal);

    public SqliteCommand CreateCommand(string sql)
    {
        var command = Connection.CreateCommand();
        command.Transaction = Transaction;
        command.CommandText = sql;
        return command;
    }

    /// <summary>
    /// A command for <paramref name="sql"/> that stays prepared across batches (do not dispose it). Set its parameters'
    /// values before each execution.
    /// </summary>
    public SqliteCommand Prepared(string sql, Action<SqliteParameterCollection> declare)
    {
        if (!_prepared.TryGetValue(sql, out var command))
        {
            command = Connection.CreateCommand();
            command.CommandText = sql;
            declare(command.Parameters);
            _prepared[sql] = command;
        }

        command.Transaction = Transaction;
        return command;
    }

    /// <summary>Runs <paramref name="action"/> once, after the batch's operations and before its commit.</summary>
    public void BeforeCommit(string key, Action<SqliteWriteContext> action)
    {
        if (BatchItems.TryAdd("before-commit:" + key, true))
        {
            _beforeCommit.Add(action);
        }
    }

    internal void RunBeforeCommit()
    {
        foreach (var action in _beforeCommit)
        {
            action(this);
        }
    }

    public int Execute(string sql, params (string Name, object? Value)[] parameters) => Command(sql, parameters).ExecuteNonQuery();

    /// <summary>
    /// The statement for <paramref name="sql"/>, prepared once for the life of the writer connection, with
    /// <paramref name="parameters"/> bound. Do not dispose it; dispose its reader.
    /// </summary>
    public SqliteCommand Command(string sql, params (string Name, object? Value)[] parameters)
    {
        var command = StatementCache.Get(_prepared, Connection, sql, parameters);
        command.Transaction = Transaction;
        return command;
    }
}
