using System.Threading.Channels;

namespace Enroll.Server.Registry;

/// <summary>
/// Group commit for one kind of PostgreSQL write, as <c>SqliteDatabase</c>'s single writer does for SQLite: commands
/// that arrive while a batch is in the database wait in a bounded queue and go together into the next one, so they share
/// one transaction, one commit and a few round trips. A lone command never waits for a batch to fill. When a batch fails
/// (a database error, a unique key a concurrent instance took, a deadlock), it is rolled back whole and each of its
/// commands runs again alone, in its own transaction: a command that fails then fails alone, the others get the outcome
/// they would have had without the batch.
/// </summary>
internal sealed class PostgresWriteBatch<TCommand, TResult> : IAsyncDisposable
{
    private readonly Channel<Pending> _queue;
    private readonly Func<IReadOnlyList<TCommand>, Task<IReadOnlyList<TResult>>> _runBatch;
    private readonly Func<TCommand, CancellationToken, Task<TResult>> _runAlone;
    private readonly int _maxBatch;
    private readonly Task _loop;
    private long _batches;
    private long _batched;
    private long _fallbacks;

    /// <param name="runBatch">Runs the commands in order in one transaction and commits; throws (having rolled back) when the batch cannot stand.</param>
    /// <param name="runAlone">Runs one command in its own transaction, as the store does without batching.</param>
    /// <param name="maxBatch">At most this many commands per transaction.</param>
    /// <param name="capacity">At most this many commands wait; more callers wait for room.</param>
    public PostgresWriteBatch(
        Func<IReadOnlyList<TCommand>, Task<IReadOnlyList<TResult>>> runBatch,
        Func<TCommand, CancellationToken, Task<TResult>> runAlone,
        int maxBatch = 128,
        int capacity = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _runBatch = runBatch;
        _runAlone = runAlone;
        _maxBatch = maxBatch;
        _queue = Channel.CreateBounded<Pending>(new BoundedChannelOptions(capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Transactions committed by batches, the commands they carried, and batches that fell back to one transaction per command.</summary>
    public (long Batches, long Commands, long Fallbacks) Statistics =>
        (Interlocked.Read(ref _batches), Interlocked.Read(ref _batched), Interlocked.Read(ref _fallbacks));

    /// <summary>Commands waiting for a batch now (never more than the capacity).</summary>
    public int Queued => _queue.Reader.Count;

    /// <summary>Queues <paramref name="command"/> (waiting for room when the queue is full) and returns its result once its transaction committed.</summary>
    public async Task<TResult> RunAsync(TCommand command, CancellationToken cancellationToken = default)
    {
        var pending = new Pending(command, cancellationToken);
        await _queue.Writer.WriteAsync(pending, cancellationToken).ConfigureAwait(false);
        return await pending.Completion.Task.ConfigureAwait(false);
    }

    private async Task LoopAsync()
    {
        var batch = new List<Pending>(_maxBatch);
        while (await _queue.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < _maxBatch && _queue.Reader.TryRead(out var next))
            {
                if (next.CancellationToken.IsCancellationRequested)
                {
                    next.Completion.TrySetCanceled(next.CancellationToken);
                }
                else
                {
                    batch.Add(next);
                }
            }

            if (batch.Count > 0)
            {
                await RunAsync(batch).ConfigureAwait(false);
            }
        }
    }

    private async Task RunAsync(List<Pending> batch)
    {
        IReadOnlyList<TResult> results;
        try
        {
            results = await _runBatch([.. batch.Select(p => p.Command)]).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the batch's failure is not the commands' answer: each runs again alone and gets its own
        catch (Exception)
#pragma warning restore CA1031
        {
            Interlocked.Increment(ref _fallbacks);
            await Task.WhenAll(batch.Select(RunAloneAsync)).ConfigureAwait(false);
            return;
        }

        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _batched, batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Completion.TrySetResult(results[i]);
        }
    }

    private async Task RunAloneAsync(Pending pending)
    {
        try
        {
            pending.Completion.TrySetResult(await _runAlone(pending.Command, pending.CancellationToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (pending.CancellationToken.IsCancellationRequested)
        {
            pending.Completion.TrySetCanceled(pending.CancellationToken);
        }
#pragma warning disable CA1031 // the command's own failure goes back to its caller; the loop keeps running
        catch (Exception ex)
#pragma warning restore CA1031
        {
            pending.Completion.TrySetException(ex);
        }
    }

    /// <summary>Lets queued commands finish, then stops.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _loop.ConfigureAwait(false);
    }

    private sealed record Pending(TCommand Command, CancellationToken CancellationToken)
    {
        // Never on the batch loop: whatever the caller does after its commit must not hold up the next batch.
        public TaskCompletionSource<TResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
