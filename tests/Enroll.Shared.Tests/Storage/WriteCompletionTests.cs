using Enroll.Shared.Storage;
using Microsoft.Data.Sqlite;

namespace Enroll.Shared.Tests.Storage;

/// <summary>
/// A caller's continuation after its write never runs on the writer thread: whatever the caller does next (acknowledge a
/// device, call a message sink, write again) must not hold up the next group commit.
/// </summary>
public sealed class WriteCompletionTests : IAsyncLifetime
{
    private readonly TempFolder _folder = new();
    private SqliteDatabase _database = null!;

    public Task InitializeAsync()
    {
        _database = new SqliteDatabase(_folder.Combine("test.db"));
        _database.ExecuteScript("CREATE TABLE items (id INTEGER PRIMARY KEY);");
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _database.DisposeAsync();
        SqliteConnection.ClearAllPools();
        _folder.Dispose();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AContinuationThatBlocks_DoesNotHoldUpTheNextCommit(bool isolated)
    {
        using var gate = new ManualResetEventSlim();
        var blocking = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = Task.Run(async () =>
        {
            await InsertAsync(1, isolated).ConfigureAwait(false);
            blocking.SetResult();

            // Were this continuation run by the writer, no other write could commit until the gate opens.
            gate.Wait(TimeSpan.FromSeconds(30));
        });
        await blocking.Task.WaitAsync(TimeSpan.FromSeconds(10));

        try
        {
            await InsertAsync(2, isolated).WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            gate.Set();
            await first;
        }
    }

    private Task<bool> InsertAsync(long id, bool isolated) =>
        _database.WriteAsync(
            context =>
            {
                context.Execute("INSERT INTO items (id) VALUES ($id)", ("$id", id));
                return true;
            },
            isolated);
}
