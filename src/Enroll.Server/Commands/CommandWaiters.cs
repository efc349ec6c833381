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
    /// command.
    /// </summary>
    public async Task<CommandRecord?> WaitAsync(string commandId, TimeSpan wait, CancellationToken cancellationToken)
    {
        var deadline = _timeProvider.GetUtcNow() + wait;
        while (true)
        {
            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Register(commandId, signal);
            try
            {
                var command = await _store.GetCommandAsync(commandId, cancellationToken).ConfigureAwait(false);
                var left = deadline - _timeProvider.GetUtcNow();
                if (command is null || command.IsFinal || left <= TimeSpan.Zero)
                {
                    return command;
                }

                var nap = left < Recheck ? left : Recheck;
                await Task.WhenAny(signal.Task, Task.Delay(nap, _timeProvider, cancellationToken)).ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
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
            else if (change.Kind == ChangeKind && change.Id is { } id && _waiting.TryGetValue(id, out var signals))
            {
                woken.AddRange(signals);
            }
        }

        foreach (var signal in woken)
        {
            signal.TrySetResult();
        }

        return Task.CompletedTask;
    }

    private void Register(string commandId, TaskCompletionSource signal)
    {
        lock (_waiting)
        {
            if (!_waiting.TryGetValue(commandId, out var signals))
            {
                signals = [];
                _waiting[commandId] = signals;
            }

            signals.Add(signal);
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
