using System.Data;
using Npgsql;

namespace Enroll.Server.Registry;

/// <summary>
/// <see cref="IRegistry"/> on PostgreSQL, for several server instances sharing one database. Concurrency is the
/// database's: unique indexes with <c>ON CONFLICT</c> (one device per client, one message per (Device ID, message ID)),
/// conditional <c>UPDATE</c>s for use counters and decisions, row locks (<c>FOR UPDATE</c>) where a check and the write it
/// allows must see the same row. Timestamps are Unix milliseconds (<c>bigint</c>), as in <see cref="SqliteRegistry"/>.
/// Connections come from one pooled <see cref="NpgsqlDataSource"/>, disposed with the store.
/// </summary>
internal sealed partial class PostgresRegistry : IRegistry
{
    /// <summary>The environment variable the database password is read from when the connection string has none.</summary>
    public const string PasswordVariable = "ENROLL_DATABASE_PASSWORD";

    private const int MaxAttempts = 10;

    private readonly NpgsqlDataSource _dataSource;
    private readonly PostgresWriteBatch<RegisterDeviceCommand, RegisterDeviceOutcome> _registrations;

    /// <summary>Opens the store and brings its schema up to date (see <see cref="PostgresMigrations"/>).</summary>
    public PostgresRegistry(string connectionString, string? password = null)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        if (string.IsNullOrEmpty(builder.ConnectionStringBuilder.Password) && !string.IsNullOrEmpty(password))
        {
            builder.ConnectionStringBuilder.Password = password;
        }

        builder.ConnectionStringBuilder.ApplicationName ??= "enroll-server";
        if (builder.ConnectionStringBuilder.MaxAutoPrepare == 0)
        {
            // The store's statements are few and fixed: prepared once per connection, they skip parse and plan.
            builder.ConnectionStringBuilder.MaxAutoPrepare = 64;
        }

        _dataSource = builder.Build();
        try
        {
            PostgresMigrations.Apply(_dataSource);
        }
        catch
        {
            _dataSource.Dispose();
            throw;
        }

        _registrations = NewRegistrationBatch();
    }

    /// <summary>The store for <see cref="EnrollServerOptions.Database"/>, its password from <see cref="PasswordVariable"/> when set (else a passfile).</summary>
    public static PostgresRegistry FromOptions(string connectionString) =>
        new(connectionString, Environment.GetEnvironmentVariable(PasswordVariable));

    public async ValueTask DisposeAsync()
    {
        await _registrations.DisposeAsync().ConfigureAwait(false);
        await _dataSource.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>A command with positional parameters <c>$1, $2, ...</c>; null is sent as SQL NULL (the SQL casts where the type is not evident).</summary>
    private static NpgsqlCommand Command(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, params object?[] values)
    {
        var command = new NpgsqlCommand(sql, connection, transaction);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value ?? DBNull.Value });
        }

        return command;
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken, params object?[] values)
    {
        await using var command = Command(connection, transaction, sql, values);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task<List<T>> QueryAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, Func<NpgsqlDataReader, T> map, CancellationToken cancellationToken, params object?[] values)
    {
        await using var command = Command(connection, transaction, sql, values);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var results = new List<T>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            results.Add(map(reader));
        }

        return results;
    }

    private static async Task<T?> QueryOneAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, Func<NpgsqlDataReader, T> map, CancellationToken cancellationToken, params object?[] values)
        where T : class =>
        (await QueryAsync(connection, transaction, sql, map, cancellationToken, values).ConfigureAwait(false)).FirstOrDefault();

    /// <summary>A read outside any transaction, on a pooled connection.</summary>
    private async Task<List<T>> ReadAsync<T>(string sql, Func<NpgsqlDataReader, T> map, CancellationToken cancellationToken, params object?[] values)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await QueryAsync(connection, null, sql, map, cancellationToken, values).ConfigureAwait(false);
    }

    /// <summary>One statement in its own (implicit) transaction.</summary>
    private async Task<int> WriteAsync(string sql, CancellationToken cancellationToken, params object?[] values)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await ExecuteAsync(connection, null, sql, cancellationToken, values).ConfigureAwait(false);
    }

    /// <summary>What a transaction's work asks for when it returns.</summary>
    private enum End
    {
        Commit,
        Rollback,

        /// <summary>Roll back and run the work again: a concurrent writer took a unique key the work was about to take, so the next run sees that writer's commit.</summary>
        Retry,
    }

    /// <summary>
    /// Runs <paramref name="work"/> in one READ COMMITTED transaction and ends it as the work says (<see cref="End"/>).
    /// A unique violation or a deadlock the database reports is retried the same way.
    /// </summary>
    private async Task<T> TransactAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<(T Result, End End)>> work, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken).ConfigureAwait(false);
            (T Result, End End) outcome;
            try
            {
                outcome = await work(connection, transaction).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (attempt < MaxAttempts && ex.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DeadlockDetected)
            {
                await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                continue;
            }

            if (outcome.End == End.Commit)
            {
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return outcome.Result;
            }

            await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
            if (outcome.End == End.Rollback || attempt >= MaxAttempts)
            {
                return outcome.Result;
            }
        }
    }

    private Task<bool> TransactAsync(Func<NpgsqlConnection, NpgsqlTransaction, Task> work, CancellationToken cancellationToken) =>
        TransactAsync<bool>(
            async (connection, transaction) =>
            {
                await work(connection, transaction).ConfigureAwait(false);
                return (true, End.Commit);
            },
            cancellationToken);
}
