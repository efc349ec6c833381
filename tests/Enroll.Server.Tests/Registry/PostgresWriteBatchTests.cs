using Enroll.Server.Registry;
using Enroll.Testing;

namespace Enroll.Server.Tests.Registry;

/// <summary>The group-commit queue of the PostgreSQL store on its own: batching, failure isolation, bounds.</summary>
public sealed class PostgresWriteBatchTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task CommandsArrivingWhileABatchRuns_GoTogetherIntoTheNextBatch_InOrder()
    {
        var runner = new GatedRunner();
        await using var batch = new PostgresWriteBatch<int, int>(runner.RunBatchAsync, runner.RunAloneAsync, maxBatch: 100, capacity: 100);

        var first = batch.RunAsync(0);
        await runner.FirstBatchStarted.Task.WaitAsync(Patience);
        var rest = Enumerable.Range(1, 10).Select(i => batch.RunAsync(i)).ToArray();
        await Eventually.ReturnsAsync(() => Task.FromResult(batch.Queued), q => q == 10, Patience, "10 commands queued");
        runner.Gate.SetResult();

        Assert.Equal(0, await first);
        Assert.Equal(Enumerable.Range(1, 10).Select(i => i * 10), await Task.WhenAll(rest));
        Assert.Equal([[0], Enumerable.Range(1, 10).ToArray()], runner.Batches);
        Assert.Equal((2, 11, 0), batch.Statistics);
    }

    [Fact]
    public async Task ABatchThatFails_RunsEachCommandAlone_SoOnlyTheFailingOneFails()
    {
        var runner = new GatedRunner { Poison = 5 };
        await using var batch = new PostgresWriteBatch<int, int>(runner.RunBatchAsync, runner.RunAloneAsync, maxBatch: 100, capacity: 100);

        var first = batch.RunAsync(0);
        await runner.FirstBatchStarted.Task.WaitAsync(Patience);
        var rest = Enumerable.Range(1, 9).Select(i => batch.RunAsync(i)).ToArray();
        await Eventually.ReturnsAsync(() => Task.FromResult(batch.Queued), q => q == 9, Patience, "9 commands queued");
        runner.Gate.SetResult();
        await first;

        var poisoned = await Assert.ThrowsAsync<InvalidOperationException>(() => rest[4]);
        Assert.Equal("command 5 fails", poisoned.Message);
        foreach (var i in Enumerable.Range(1, 9).Where(i => i != 5))
        {
            Assert.Equal(i * 10, await rest[i - 1]);
        }

        Assert.Equal(Enumerable.Range(1, 9).Order(), runner.Alone.Order());
        Assert.Equal(1, batch.Statistics.Fallbacks);
    }

    [Fact]
    public async Task MoreCommandsThanTheQueueHolds_WaitForRoom_AndNoBatchIsLargerThanItsBound()
    {
        var runner = new GatedRunner();
        await using var batch = new PostgresWriteBatch<int, int>(runner.RunBatchAsync, runner.RunAloneAsync, maxBatch: 4, capacity: 8);

        var first = batch.RunAsync(0);
        await runner.FirstBatchStarted.Task.WaitAsync(Patience);
        var rest = Enumerable.Range(1, 20).Select(i => batch.RunAsync(i)).ToArray();
        await Eventually.ReturnsAsync(() => Task.FromResult(batch.Queued), q => q == 8, Patience, "8 commands queued");

        Assert.Equal(8, batch.Queued);
        Assert.All(rest, t => Assert.False(t.IsCompleted));
        runner.Gate.SetResult();

        Assert.Equal(Enumerable.Range(1, 20).Select(i => i * 10), await Task.WhenAll(rest).WaitAsync(Patience));
        await first;
        Assert.All(runner.Batches, b => Assert.InRange(b.Length, 1, 4));
        Assert.Equal(Enumerable.Range(0, 21), runner.Batches.SelectMany(b => b).Order());
    }

    [Fact]
    public async Task ACommandCancelledWhileQueued_IsCancelled_AndNotRun()
    {
        var runner = new GatedRunner();
        await using var batch = new PostgresWriteBatch<int, int>(runner.RunBatchAsync, runner.RunAloneAsync, maxBatch: 100, capacity: 100);
        using var cancellation = new CancellationTokenSource();

        var first = batch.RunAsync(0);
        await runner.FirstBatchStarted.Task.WaitAsync(Patience);
        var cancelled = batch.RunAsync(1, cancellation.Token);
        var kept = batch.RunAsync(2);
        await Eventually.ReturnsAsync(() => Task.FromResult(batch.Queued), q => q == 2, Patience, "2 commands queued");
        await cancellation.CancelAsync();
        runner.Gate.SetResult();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(20, await kept);
        await first;
        Assert.Equal([[0], [2]], runner.Batches);
    }

    /// <summary>Answers command i with i × 10; the first batch waits for <see cref="Gate"/>; a batch holding <see cref="Poison"/> fails, as does that command alone.</summary>
    private sealed class GatedRunner
    {
        private readonly Lock _lock = new();

        public TaskCompletionSource FirstBatchStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int? Poison { get; init; }

        public List<int[]> Batches { get; } = [];

        public List<int> Alone { get; } = [];

        public async Task<IReadOnlyList<int>> RunBatchAsync(IReadOnlyList<int> commands)
        {
            lock (_lock)
            {
                Batches.Add([.. commands]);
            }

            if (FirstBatchStarted.TrySetResult())
            {
                await Gate.Task;
            }

            if (commands.Contains(Poison ?? -1))
            {
                throw new InvalidOperationException("the batch fails");
            }

            return [.. commands.Select(c => c * 10)];
        }

        public Task<int> RunAloneAsync(int command, CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            lock (_lock)
            {
                Alone.Add(command);
            }

            return command == Poison ? Task.FromException<int>(new InvalidOperationException($"command {command} fails")) : Task.FromResult(command * 10);
        }
    }
}
