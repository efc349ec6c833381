using System.Reflection;
using Enroll.Protocol.Messages;
using Enroll.Server.Commands;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Server.Tests.Commands;

/// <summary>
/// <see cref="CommandWaiters"/>: a waiter that knows its command is open waits without first reading the store, yet never
/// misses a result announced before it registered, and re-reads the store when no announcement comes.
/// </summary>
public sealed class CommandWaitersTests : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 12, 2, 12, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time = new(Start);
    private readonly InProcessRegistryChanges _changes = new(NullLogger<InProcessRegistryChanges>.Instance);
    private readonly CountingCommands _store;
    private readonly CommandWaiters _waiters;

    public CommandWaitersTests()
    {
        _store = CountingCommands.Create();
        _waiters = new CommandWaiters((ICommandStore)(object)_store, _changes, _time);
    }

    public void Dispose() => _waiters.Dispose();

    [Fact]
    public async Task KnownOpen_WaitsWithoutReading_AndReturnsTheResultAnnouncedLater()
    {
        var open = Command(CommandStatuses.Sent);
        _store.Current = open;
        var waiting = _waiters.WaitAsync(open.CommandId, TimeSpan.FromSeconds(30), CancellationToken.None, known: open);

        await Task.Delay(50);
        Assert.False(waiting.IsCompleted);
        Assert.Equal(0, _store.Reads);

        _store.Current = open with { State = CommandStatuses.Succeeded, FinishedAt = Start };
        await _waiters.AnnounceFinishedAsync(open.CommandId);

        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(CommandStatuses.Succeeded, result!.State);
        Assert.Equal(1, _store.Reads);
    }

    [Fact]
    public async Task AnnouncedBeforeTheWaiterRegistered_IsReadAtOnce()
    {
        var open = Command(CommandStatuses.Sent);
        _store.Current = open with { State = CommandStatuses.Failed, FinishedAt = Start };
        await _waiters.AnnounceFinishedAsync(open.CommandId);

        // The caller still holds the open record it had before the result came: the waiter must not trust it.
        var result = await _waiters.WaitAsync(open.CommandId, TimeSpan.FromSeconds(30), CancellationToken.None, known: open).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(CommandStatuses.Failed, result!.State);
        Assert.Equal(1, _store.Reads);
    }

    [Fact]
    public async Task NoAnnouncement_TheStoreIsReadAgainAfterTheRecheck()
    {
        var open = Command(CommandStatuses.Sent);
        _store.Current = open;
        var waiting = _waiters.WaitAsync(open.CommandId, TimeSpan.FromSeconds(30), CancellationToken.None, known: open);
        await Task.Delay(50);

        // The result was recorded, but its announcement was lost.
        _store.Current = open with { State = CommandStatuses.Succeeded, FinishedAt = Start };
        while (!waiting.IsCompleted)
        {
            _time.Advance(_waiters.Recheck);
            await Task.WhenAny(waiting, Task.Delay(20));
        }

        Assert.Equal(CommandStatuses.Succeeded, (await waiting)!.State);
        Assert.Equal(1, _store.Reads);
    }

    [Fact]
    public async Task WaitPassed_ReturnsTheCommandAsItIs()
    {
        var open = Command(CommandStatuses.Queued);
        _store.Current = open;
        var waiting = _waiters.WaitAsync(open.CommandId, TimeSpan.FromSeconds(2), CancellationToken.None);
        while (!waiting.IsCompleted)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            await Task.WhenAny(waiting, Task.Delay(20));
        }

        Assert.Equal(CommandStatuses.Queued, (await waiting)!.State);
    }

    private static CommandRecord Command(string state) =>
        new("cmd_" + Guid.NewGuid().ToString("N"), "dev_1", "reboot", null, state, Start, Start.AddHours(1));

    /// <summary>The one store call the waiters make, counted; any other call fails the test.</summary>
    public class CountingCommands : DispatchProxy
    {
        private int _reads;

        internal CommandRecord? Current { get; set; }

        internal int Reads => Volatile.Read(ref _reads);

        internal static CountingCommands Create() => (CountingCommands)(object)Create<ICommandStore, CountingCommands>();

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            if (targetMethod?.Name != nameof(ICommandStore.GetCommandAsync))
            {
                throw new InvalidOperationException($"the waiters called {targetMethod?.Name}");
            }

            Interlocked.Increment(ref _reads);
            return Task.FromResult(Current);
        }
    }
}
