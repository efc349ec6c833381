using System.Diagnostics;
using System.Threading.Channels;
using Enroll.Shared.Files;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Enroll.Shared.Storage;

/// <summary>
/// One SQLite file in WAL mode with a single writer that coalesces concurrent writes into one transaction (group commit):
/// a write returns only after the transaction holding it committed. A lone writer never waits for a batch to fill; the
/// writer takes whatever is queued the moment the previous commit ends. Reads use their own pooled connections.
/// </summary>
internal sealed class SqliteDatabase : IAsyncDisposable
{
    private readonly Channel<IWriteOperation> _queue;
    private readonly SqliteConnection _writer;
    private readonly Task _writerLoop;
    private readonly string _readConnectionString;
    private readonly string _synchronous;
    private readonly int _maxBatch;
    private const int MaxPooledReaders = 16;
    private readonly Dictionary<string, SqliteCommand> _prepared = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentBag<SqliteReadContext> _readers = [];
    private readonly Lock _writerLock = new();
    private readonly Lock _versionLock = new();
    private SqliteConnection? _versionConnection;
    private sqlite3_stmt? _versionStatement;
    private int _queued;
    private int _disposed;
    private int _expectedWrites;
    private long _lastCommitTicks;
    private int _gatherTarget;
    private readonly ManualResetEventSlim _gathered = new(false);

    public SqliteDatabase(string path, SqliteDurability durability = SqliteDurability.Full, int maxBatch = 512)
    {
        Path = System.IO.Path.GetFullPath(path);
        OwnerOnlyFiles.EnsureDirectory(System.IO.Path.GetDirectoryName(Path)!);
        OwnerOnlyFiles.Touch(Path);
        _maxBatch = maxBatch;
        _synchronous = durability == SqliteDurability.Full ? "FULL" : "NORMAL";
        var builder = new SqliteConnectionStringBuilder { DataSource = Path, Pooling = true, DefaultTimeout = 30 };
        _readConnectionString = builder.ToString();
        builder.Pooling = false;
        _writer = new SqliteConnection(builder.ToString());
        _writer.Open();
        Pragmas(_writer, $"PRAGMA journal_mode=WAL; PRAGMA synchronous={_synchronous}; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=30000;");
        _queue = Channel.CreateUnbounded<IWriteOperation>(new UnboundedChannelOptions { SingleReader = true });
        Durability = durability;
        _writerLoop = Task.Factory.StartNew(WriterLoop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    public string Path { get; }

    /// <summary>
    /// When true, a write that finds the writer idle and nothing queued commits at once on the caller's thread instead
    /// of handing over to the writer loop and back: a lone writer pays only its own commit. A write is lone when its
    /// predecessor was: one arriving just after a batch of several goes to the writer, so concurrent writers do not
    /// alternate a commit of one of them with a commit of the rest. The caller's thread then
    /// blocks for that commit, so leave it off where the caller must not block (a broker's receive loop).
    /// </summary>
    public bool InlineLoneWrites { get; set; }

    /// <summary>
    /// When true, a batch that would start with fewer writes than were under way when the previous one committed (its
    /// own writes and those queued behind it) waits for the rest: until as many are queued, and at most as long as the
    /// previous commit took (a millisecond or two; the wait blocks rather than spins, as the writes it waits for need
    /// the cores). Writers that each keep one write outstanding (senders in a loop) otherwise settle into alternating
    /// half batches, one committing while the other comes back, and pay twice the commits for the same writes. A lone
    /// writer is never held, and a wait that runs out sets the next expectation to what came.
    /// </summary>
    public bool GatherWrites { get; set; }

    public SqliteDurability Durability { get; }

    /// <summary>Number of transactions committed by the writer; with <see cref="WritesCommitted"/> shows the batching.</summary>
    public long Commits => Interlocked.Read(ref _commits);

    /// <summary>Number of write operations committed.</summary>
    public long WritesCommitted => Interlocked.Read(ref _writes);

    /// <summary>Write operations waiting for the writer (they will share its next commits).</summary>
    public int QueuedWrites => Math.Max(0, Volatile.Read(ref _queued));

    private long _commits;
    private long _writes;

    /// <summary>Runs DDL or other statements directly on the writer connection, outside any batch. For start-up only.</summary>
    public void ExecuteScript(string sql)
    {
        using var command = _writer.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>
    /// Runs <paramref name="read"/> on one of a pool of read connections that keep their prepared statements, so a
    /// frequent query is parsed once per connection rather than on every call.
    /// </summary>
    public T Read<T>(Func<SqliteReadContext, T> read)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!_readers.TryTake(out var reader))
        {
            var connection = OpenRead();
            reader = new SqliteReadContext(connection);
        }

        try
        {
            return read(reader);
        }
        finally
        {
            if (_readers.Count < MaxPooledReaders && Volatile.Read(ref _disposed) == 0)
            {
                _readers.Add(reader);
            }
            else
            {
                reader.Dispose();
            }
        }
    }

    /// <summary>
    /// A number that changes whenever a transaction commits to the file, from this process or any other
    /// (<c>PRAGMA data_version</c> on one connection kept for it). A watch for work another process may have written
    /// compares it with the value it saw last and wakes its loop only when it moved: an idle poll costs one pragma
    /// instead of the queries and objects of a full read.
    /// </summary>
    public long ChangeVersion()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        lock (_versionLock)
        {
            // Straight on the handle, the statement prepared once: a poll every second allocates nothing.
            if (_versionStatement is null)
            {
                _versionConnection = OpenRead();
                Check(raw.sqlite3_prepare_v2(_versionConnection.Handle, "PRAGMA data_version;", out _versionStatement));
            }

            try
            {
                var rc = raw.sqlite3_step(_versionStatement);
                Check(rc == raw.SQLITE_ROW ? raw.SQLITE_OK : rc);
                return raw.sqlite3_column_int64(_versionStatement, 0);
            }
            finally
            {
                raw.sqlite3_reset(_versionStatement);
            }
        }

        void Check(int rc)
        {
            if (rc != raw.SQLITE_OK)
            {
                throw new SqliteException($"PRAGMA data_version on {Path} failed: {raw.sqlite3_errstr(rc).utf8_to_string()}", rc);
            }
        }
    }

    /// <summary>Opens a connection for reading. Dispose it when done.</summary>
    public SqliteConnection OpenRead()
    {
        var connection = new SqliteConnection(_readConnectionString);
        connection.Open();
        Pragmas(connection, "PRAGMA busy_timeout=30000;");
        return connection;
    }

    /// <summary>
    /// Queues <paramref name="operation"/> for the next group commit and completes after that commit. The operation runs
    /// inside a savepoint: if it throws, only its own changes roll back and the exception reaches this caller.
    /// </summary>
    public Task<T> WriteAsync<T>(Func<SqliteWriteContext, T> operation, CancellationToken cancellationToken = default) =>
        WriteAsync(operation, isolated: true, cancellationToken);

    /// <summary>
    /// As <see cref="WriteAsync{T}(Func{SqliteWriteContext, T}, CancellationToken)"/>; with <paramref name="isolated"/>
    /// false the operation runs without its own savepoint, which is cheaper but only right for an operation that either
    /// throws before it changes anything or cannot fail halfway.
    /// </summary>
    public Task<T> WriteAsync<T>(Func<SqliteWriteContext, T> operation, bool isolated, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var item = new WriteOperation<T>(operation, isolated, cancellationToken);
        if (InlineLoneWrites && Volatile.Read(ref _queued) <= 0 && Volatile.Read(ref _expectedWrites) <= 1 && _writerLock.TryEnter())
        {
            List<IWriteOperation>? lone = null;
            Exception? failure = null;
            try
            {
                if (Volatile.Read(ref _queued) <= 0 && Volatile.Read(ref _disposed) == 0)
                {
                    lone = [item];
                    failure = CommitBatch(lone);
                }
            }
            finally
            {
                _writerLock.Exit();
            }

            if (lone is not null)
            {
                Finish(lone, failure);
                return item.Completion.Task;
            }
        }

        if (!_queue.Writer.TryWrite(item))
        {
            ObjectDisposedException.ThrowIf(true, this);
        }

        var queued = Interlocked.Increment(ref _queued);
        if (Volatile.Read(ref _gatherTarget) is > 0 and var target && queued >= target)
        {
            _gathered.Set();
        }

        return item.Completion.Task;
    }

    /// <summary>
    /// Runs <paramref name="maintenance"/> on the writer connection between batches, outside any transaction (for
    /// <c>PRAGMA incremental_vacuum</c>, WAL checkpoints and the like).
    /// </summary>
    public Task MaintainAsync(Action<SqliteConnection> maintenance)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var item = new MaintenanceOperation(maintenance);
        if (!_queue.Writer.TryWrite(item))
        {
            ObjectDisposedException.ThrowIf(true, this);
        }

        Interlocked.Increment(ref _queued);
        return item.Completion.Task;
    }

    /// <summary>Queues a write without a result; see <see cref="WriteAsync{T}(Func{SqliteWriteContext, T}, CancellationToken)"/>.</summary>
    public Task WriteAsync(Action<SqliteWriteContext> operation, CancellationToken cancellationToken = default) =>
        WriteAsync<bool>(context =>
        {
            operation(context);
            return true;
        }, cancellationToken);

    private async Task WriterLoop()
    {
        var batch = new List<IWriteOperation>(_maxBatch);
        while (await _queue.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            GatherLateWrites();
            Exception? failure = null;
            using (_writerLock.EnterScope())
            {
                while (batch.Count < _maxBatch && _queue.Reader.TryPeek(out var next))
                {
                    if (next is MaintenanceOperation maintenance)
                    {
                        if (batch.Count > 0)
                        {
                            break;
                        }

                        _queue.Reader.TryRead(out _);
                        Interlocked.Decrement(ref _queued);
                        maintenance.Run(_writer);
                        continue;
                    }

                    _queue.Reader.TryRead(out var item);
                    Interlocked.Decrement(ref _queued);
                    if (!item!.IsCancelled)
                    {
                        batch.Add(item);
                    }
                }

                if (batch.Count > 0)
                {
                    failure = CommitBatch(batch);
                }
            }

            // Outside the lock: handing out the results does not hold up an inline lone write.
            Finish(batch, failure);
        }
    }

    /// <summary>See <see cref="GatherWrites"/>.</summary>
    private void GatherLateWrites()
    {
        var expected = Math.Min(Volatile.Read(ref _expectedWrites), _maxBatch);
        if (!GatherWrites || expected < 2 || Volatile.Read(ref _queued) >= expected)
        {
            return;
        }

        // The wait's granularity is a millisecond.
        var limit = Math.Clamp((int)Math.Ceiling(Stopwatch.GetElapsedTime(0, Volatile.Read(ref _lastCommitTicks)).TotalMilliseconds), 1, 2);
        _gathered.Reset();

        // A full fence, as the writers' increment is: either the count read next sees their write or they see the target.
        Interlocked.Exchange(ref _gatherTarget, expected);
        if (Volatile.Read(ref _queued) < expected)
        {
            _gathered.Wait(limit);
        }

        Volatile.Write(ref _gatherTarget, 0);
    }

    /// <summary>Runs and commits <paramref name="batch"/>; returns the failure that fails all of it, if any.</summary>
    private Exception? CommitBatch(List<IWriteOperation> batch)
    {
        SqliteTransaction? transaction = null;
        var started = Stopwatch.GetTimestamp();
        try
        {
            transaction = _writer.BeginTransaction(deferred: false);
            var context = new SqliteWriteContext(_writer, transaction, _prepared);
            foreach (var item in batch)
            {
                if (!item.Isolated)
                {
                    if (!item.Run(context) && item.Error is SqliteException database)
                    {
                        // A database error (SQLITE_FULL, SQLITE_IOERR, ...) may have rolled the whole transaction back:
                        // the batch fails with it, not with "this transaction has completed" at the commit.
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(database);
                    }

                    continue;
                }

                transaction.Save("op");
                if (item.Run(context))
                {
                    transaction.Release("op");
                }
                else
                {
                    try
                    {
                        transaction.Rollback("op");
                        transaction.Release("op");
                    }
                    catch (InvalidOperationException) when (item.Error is SqliteException database)
                    {
                        // The database error took the savepoint with the whole transaction (SQLITE_FULL, SQLITE_IOERR,
                        // ...): the batch fails with it, as a non-isolated write's does, not with "this transaction has completed".
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(database);
                    }
                }
            }

            context.RunBeforeCommit();
            transaction.Commit();
            Interlocked.Increment(ref _commits);
            Interlocked.Add(ref _writes, batch.Count);
            Volatile.Write(ref _expectedWrites, batch.Count + Math.Max(0, Volatile.Read(ref _queued)));
            Volatile.Write(ref _lastCommitTicks, Stopwatch.GetTimestamp() - started);
            return null;
        }
#pragma warning disable CA1031 // a failed commit fails every write in the batch; the writer loop keeps running
        catch (Exception ex)
#pragma warning restore CA1031
        {
            return ex;
        }
        finally
        {
            try
            {
                transaction?.Dispose();
            }
            catch (InvalidOperationException)
            {
                // SQLite already rolled the transaction back itself (SQLITE_FULL, SQLITE_IOERR, ...): the error that
                // made it do so is the one the writes fail with, not "this transaction has completed".
            }
        }
    }

    /// <summary>Hands each write of a committed (or failed) batch its result.</summary>
    private static void Finish(List<IWriteOperation> batch, Exception? failure)
    {
        foreach (var item in batch)
        {
            if (failure is null)
            {
                item.Complete();
            }
            else
            {
                item.Fail(failure);
            }
        }
    }

    private static void Pragmas(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _queue.Writer.TryComplete();
        await _writerLoop.ConfigureAwait(false);
        _gathered.Dispose();
        while (_readers.TryTake(out var reader))
        {
            reader.Dispose();
        }

        lock (_versionLock)
        {
            _versionStatement?.Dispose();
            _versionConnection?.Dispose();
            _versionStatement = null;
            _versionConnection = null;
        }

        // An inline write that started before the dispose finishes first.
        lock (_writerLock)
        {
            StatementCache.Dispose(_prepared);
            _writer.Dispose();
        }
    }

    private interface IWriteOperation
    {
        bool IsCancelled { get; }

        bool Isolated { get; }

        /// <summary>Runs the operation; false when it threw (its exception is kept for <see cref="Complete"/>).</summary>
        bool Run(SqliteWriteContext context);

        /// <summary>What <see cref="Run"/> threw, if it did.</summary>
        Exception? Error { get; }

        void Complete();

        void Fail(Exception exception);
    }

    private sealed class MaintenanceOperation(Action<SqliteConnection> maintenance) : IWriteOperation
    {
        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool IsCancelled => false;

        public bool Isolated => true;

        public Exception? Error => null;

        public void Run(SqliteConnection connection)
        {
            try
            {
                maintenance(connection);
                Completion.TrySetResult();
            }
#pragma warning disable CA1031 // the caller gets the failure; the writer loop keeps running
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Completion.TrySetException(ex);
            }
        }

        public bool Run(SqliteWriteContext context) => throw new InvalidOperationException("maintenance runs outside batches");

        public void Complete()
        {
        }

        public void Fail(Exception exception) => Completion.TrySetException(exception);
    }

    private sealed class WriteOperation<T>(Func<SqliteWriteContext, T> operation, bool isolated, CancellationToken cancellationToken) : IWriteOperation
    {
        private T? _result;

        public bool Isolated => isolated;
        private Exception? _error;

        // Never on the writer thread: whatever the caller does after its commit must not hold up the next one.
        public TaskCompletionSource<T> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool IsCancelled
        {
            get
            {
                if (!cancellationToken.IsCancellationRequested)
                {
                    return false;
                }

                Completion.TrySetCanceled(cancellationToken);
                return true;
            }
        }

        public bool Run(SqliteWriteContext context)
        {
            try
            {
                _result = operation(context);
                return true;
            }
#pragma warning disable CA1031 // the operation's own failure goes back to its caller, not to the batch
            catch (Exception ex)
#pragma warning restore CA1031
            {
                _error = ex;
                return false;
            }
        }

        public void Complete()
        {
            if (_error is not null)
            {
                Completion.TrySetException(_error);
            }
            else
            {
                Completion.TrySetResult(_result!);
            }
        }

        public Exception? Error => _error;

        public void Fail(Exception exception) => Completion.TrySetException(exception);
    }
}
