using Enroll.Shared.Storage;
using Microsoft.Data.Sqlite;

namespace Enroll.Shared.Tests.Storage;

public sealed class SqliteDatabaseTests : IAsyncLifetime
{
    private const int SqliteConstraint = 19;
    private const int SqliteFull = 13;
    private readonly TempFolder _folder = new();
    private SqliteDatabase _database = null!;

    public Task InitializeAsync()
    {
        _database = new SqliteDatabase(_folder.Combine("test.db"));
        _database.ExecuteScript("CREATE TABLE items (id INTEGER PRIMARY KEY, payload BLOB);");
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _database.DisposeAsync();
        SqliteConnection.ClearAllPools();
        _folder.Dispose();
    }

    private Task Insert(long id, bool isolated = true, int payloadBytes = 1) =>
        _database.WriteAsync<bool>(
            context =>
            {
                context.Execute("INSERT INTO items (id, payload) VALUES ($id, zeroblob($size))", ("$id", id), ("$size", payloadBytes));
                return true;
            },
            isolated);

    private List<long> Ids() => _database.Read(context =>
    {
        using var reader = context.Command("SELECT id FROM items ORDER BY id").ExecuteReader();
        var ids = new List<long>();
        while (reader.Read())
        {
            ids.Add(reader.GetInt64(0));
        }

        return ids;
    });

    /// <summary>
    /// Holds the file's write lock from another connection, lets a first write take the writer into its commit (where it
    /// waits for the lock), then queues <paramref name="queue"/>'s writes behind it and releases the lock once all of
    /// them are queued: the writer commits the first write alone and then everything queued, up to its batch size, in one
    /// transaction. Returns the queued writes.
    /// </summary>
    private async Task<List<Task>> AfterABlockedCommit(Func<List<Task>> queue)
    {
        List<Task> writes;
        Task first;
        using (var other = new SqliteConnection($"Data Source={_database.Path};Pooling=false"))
        {
            other.Open();
            using var writeLock = other.BeginTransaction(deferred: false);
            first = Insert(1000);
            await WaitUntil(() => _database.QueuedWrites == 0, "the writer took the first write");
            writes = queue();
            await WaitUntil(() => _database.QueuedWrites == writes.Count, $"{writes.Count} writes queued");
            writeLock.Rollback();
        }

        await first;
        return writes;
    }

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{what} did not happen within 20 s");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }

    [Fact]
    public async Task Write_WhenItReturns_IsCommittedAndVisibleToReads()
    {
        await Insert(1);

        Assert.Equal([1L], Ids());
        Assert.Equal(1, _database.Commits);
        Assert.Equal(1, _database.WritesCommitted);
    }

    [Fact]
    public async Task ManyConcurrentWriters_ShareCommits()
    {
        var writes = await AfterABlockedCommit(() => Enumerable.Range(1, 256).Select(i => Task.Run(() => Insert(i))).ToList());
        await Task.WhenAll(writes);

        // The first write's commit, then one for all 256 that queued meanwhile.
        Assert.Equal(2, _database.Commits);
        Assert.Equal(257, _database.WritesCommitted);
        Assert.Equal(Enumerable.Range(1, 256).Select(i => (long)i).Append(1000), Ids());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AWriteJustAfterABatchOfSeveral_GoesToTheWriter_AndTheWriteAfterItCommitsInline(bool gather)
    {
        var writes = await AfterABlockedCommit(() => Enumerable.Range(1, 3).Select(i => Task.Run(() => Insert(i))).ToList());
        await Task.WhenAll(writes);
        _database.InlineLoneWrites = true;
        _database.GatherWrites = gather;

        // Three writers were under way: the next write may be one of several coming back, so it does not commit alone
        // on its caller's thread ahead of the others (nor, gathering, wait for them longer than a commit). Another
        // connection holds the file's write lock: a write committed inline would block its caller until the lock goes,
        // one handed to the writer returns at once, pending.
        Task handedOver;
        using (var other = new SqliteConnection($"Data Source={_database.Path};Pooling=false"))
        {
            other.Open();
            using var writeLock = other.BeginTransaction(deferred: false);
            handedOver = await Task.Factory.StartNew(() => Insert(10), CancellationToken.None, TaskCreationOptions.None, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(20));
            Assert.False(handedOver.IsCompleted);
            writeLock.Rollback();
        }

        await handedOver;

        // That write came alone: the next is lone and commits on its caller's thread, done when the call returns.
        var lone = Insert(11);
        Assert.True(lone.IsCompleted);
        await lone;
        Assert.Equal([1L, 2, 3, 10, 11, 1000], Ids());
    }

    [Fact]
    public async Task ConstraintViolation_FailsOnlyThatWrite_TheOthersInItsCommitAndTheNextWriteSucceed()
    {
        await Insert(7);
        var before = _database.Commits;

        // The duplicate shares one commit with the good writes queued before and after it.
        var writes = await AfterABlockedCommit(() => [Insert(1), Insert(2), Insert(7), Insert(3)]);
        var duplicate = await Assert.ThrowsAsync<SqliteException>(() => writes[2]);
        await Task.WhenAll(writes[0], writes[1], writes[3]);

        Assert.Equal(SqliteConstraint, duplicate.SqliteErrorCode);
        Assert.Equal(2, _database.Commits - before);
        await Insert(4);
        Assert.Equal([1L, 2, 3, 4, 7, 1000], Ids());
    }

    private async Task LimitGrowthToTwoPages()
    {
        var pages = _database.Read(context => (long)context.Command("PRAGMA page_count").ExecuteScalar()!);
        await _database.MaintainAsync(connection =>
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"PRAGMA max_page_count = {pages + 2}";
            command.ExecuteNonQuery();
        });
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DiskFull_FailsTheWriteWithSqliteFull_AndTheNextWriteSucceeds(bool isolated)
    {
        await Insert(1);
        await LimitGrowthToTwoPages();

        // A megabyte needs far more pages than the file may grow by.
        var full = await Assert.ThrowsAsync<SqliteException>(() => Insert(2, isolated, payloadBytes: 1 << 20));

        Assert.Equal(SqliteFull, full.SqliteErrorCode);
        await Insert(3);
        Assert.Equal([1L, 3], Ids());
    }

    [Fact]
    public async Task DiskFull_InANonIsolatedWrite_FailsTheWholeBatchWithSqliteFull_AndTheNextBatchCommits()
    {
        await LimitGrowthToTwoPages();

        // Not isolated, the error may have rolled back the whole transaction: every write of the batch fails with it.
        var writes = await AfterABlockedCommit(() => [Insert(1), Insert(2, isolated: false, payloadBytes: 1 << 20), Insert(3)]);
        foreach (var write in writes)
        {
            Assert.Equal(SqliteFull, (await Assert.ThrowsAsync<SqliteException>(() => write)).SqliteErrorCode);
        }

        await Insert(4);
        Assert.Equal([4L, 1000], Ids());
    }

    [Fact]
    public async Task Write_AfterDispose_Throws()
    {
        await _database.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => Insert(1));
    }

    [Fact]
    public async Task Change_version_moves_with_every_commit_from_this_writer_or_another_connection_and_only_then()
    {
        var first = _database.ChangeVersion();
        Assert.Equal(first, _database.ChangeVersion());
        _ = Ids();
        Assert.Equal(first, _database.ChangeVersion());

        await Insert(1);
        var afterOwn = _database.ChangeVersion();
        Assert.NotEqual(first, afterOwn);

        using (var other = new SqliteConnection($"Data Source={_database.Path};Pooling=false"))
        {
            other.Open();
            using var command = other.CreateCommand();
            command.CommandText = "INSERT INTO items (id, payload) VALUES (2, x'00')";
            command.ExecuteNonQuery();
        }

        var afterOther = _database.ChangeVersion();
        Assert.NotEqual(afterOwn, afterOther);
        Assert.Equal(afterOther, _database.ChangeVersion());
    }

    [Fact]
    public async Task Change_version_after_dispose_is_refused()
    {
        _ = _database.ChangeVersion();
        await _database.DisposeAsync();

        Assert.Throws<ObjectDisposedException>(() => _database.ChangeVersion());
    }
}
