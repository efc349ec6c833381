using Enroll.Server.Registry;

namespace Enroll.Server.Commands;

/// <summary>
/// Lets a caller wait for a command to finish, on any instance: whoever finishes a command (a device's result, a cancel,
/// the expiry sweep) announces <see cref="ChangeKind"/> with its ID on the registry's change feed
/// (<see cref="IRegistryChanges"/>: in-process on SQLite, <c>NOTIFY</c> on PostgreSQL), which wakes the waiters here; a
/// waiter then reads the command from the store, so a lost or early notification costs only a re-read.
/// </summary>
internal sealed class CommandWaiters : IDisposable
{
    /// <summary>The change-feed kind announced when a command finished; its ID is the command's.</summary>
    public const string ChangeKind = "command_result";

    /// <summary>The longest a waiter sleeps without re-reading the store (covers a notification that never came); 5 s.</summary>
    public TimeSpan Recheck { get; set; } = TimeSpan.FromSeconds(5);

    private readonly ICommandStore _store;
    private readonly IRegistryChanges _changes;
    private readonly TimeProvider _timeProvider;
    private readonly IDisposable _subscription;
    private readonly Dictionary<string, List<TaskCompletionSource>> _waiting = new(StringComparer.Ordinal);

    // The commands announced finished most recently (bounded): a waiter that registers after its command's announcement
    // sees it here, so a caller that knows the command is still open can wait without first re-reading the store.
    private const int RecentCapacity = 4096;
    private readonly HashSet<string> _recentlyFinished = new(StringComparer.Ordinal);
    private readonly Queue<string> _recentOrder = new();

    public CommandWaiters(ICommandStore store, IRegistryChanges changes, TimeProvider timeProvider)
    {
        _store = store;
        _changes = changes;
        _timeProvider = timeProvider;
        _subscription = changes.Observe(OnChange);
    }

    /// <summary>Tells every instance's waiters that <paramref name="commandId"/> finished; call it after the commit.</summary>
    public Task AnnounceFinishedAsync(string commandId, CancellationToken cancellationToken = default) =>
        _changes.AnnounceAsync(new RegistryChange(ChangeKind, commandId), cancellationToken);

    /// <summary>
    /// The command once it is final, or as it is when <paramref name="wait"/> passed first; null when there is no such
    /// command. <paramref name="known"/> is the command as the caller just had it from the store: while it is open and
    /// not announced finished since, the first look at the store is skipped.
    /// </summary>
    public async Task<CommandRecord?> WaitAsync(string commandId, TimeSpan wait, CancellationToken cancellationToken, CommandRecord? known = null)
    {
        var deadline = _timeProvider.GetUtcNow() + wait;
        while (true)
        {
            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var finished = Register(commandId, signal);
            try
            {
                var command = known is { IsFinal: false } && !finished
                    ? known
                    : await _store.GetCommandAsync(commandId, cancellationToken).ConfigureAwait(false);
                known = null;
                var left = deadline - _timeProvider.GetUtcNow();
                if (command is null || command.IsFinal || left <= TimeSpan.Zero)
                {
                    return command;
                }

                var nap = left < Recheck ? left : Recheck;
                try
                {
                    // WaitAsync drops its timer as soon as the signal comes; a Task.Delay raced against the signal would
                    // keep one timer alive per waiter for the whole nap (thousands of them at a high command rate).
                    await signal.Task.WaitAsync(nap, _timeProvider, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // No notification within the nap: re-read the store.
                }
            }
            finally
            {
                Unregister(commandId, signal);
            }
        }
    }

    public void Dispose() => _subscription.Dispose();

    private Task OnChange(RegistryChange change)
    {
        List<TaskCompletionSource> woken = [];
        lock (_waiting)
        {
            if (change.Kind == RegistryChange.Everything)
            {
                woken.AddRange(_waiting.Values.SelectMany(s => s));
            }
            else if (change.Kind == ChangeKind && change.Id is { } id)
            {
                if (_recentlyFinished.Add(id))
                {
                    _recentOrder.Enqueue(id);
                    if (_recentOrder.Count > RecentCapacity)
                    {
                        _recentlyFinished.Remove(_recentOrder.Dequeue());
                    }
                }

                if (_waiting.TryGetValue(id, out var signals))
                {
                    woken.AddRange(signals);
                }
            }
        }

        foreach (var signal in woken)
        {
            signal.TrySetResult();
        }

        return Task.CompletedTask;
    }

    /// <summary>Registers <paramref name="signal"/> for <paramref name="commandId"/>; true when it was announced finished recently.</summary>
    private bool Register(string commandId, TaskCompletionSource signal)
    {
        lock (_waiting)
        {
            if (!_waiting.TryGetValue(commandId, out var signals))
            {
                signals = [];
                _waiting[commandId] = signals;
            }

            signals.Add(signal);
            return _recentlyFinished.Contains(commandId);
        }
    }

    private void Unregister(string commandId, TaskCompletionSource signal)
    {
        lock (_waiting)
        {
            if (_waiting.TryGetValue(commandId, out var signals) && signals.Remove(signal) && signals.Count == 0)
            {
                _waiting.Remove(commandId);
            }
        }
    }
}
