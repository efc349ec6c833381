using System.Text.Json.Nodes;
using Enroll.Device.Diagnostics;
using Enroll.Device.State;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Twins;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Enroll.Device;

/// <summary>One desired version the device applied (SPEC §2.5).</summary>
/// <param name="Version">The desired version now applied.</param>
/// <param name="Desired">The whole desired document at <paramref name="Version"/> (a copy).</param>
/// <param name="Patch">The merge patch that made it; null when the server sent the whole document (it replaced the device's).</param>
public sealed record DesiredTwinChange(long Version, JsonObject Desired, JsonObject? Patch)
{
    /// <summary>True when the server sent the whole document (it no longer kept the patches since the device's version).</summary>
    public bool IsWholeDocument => Patch is null;
}

/// <summary>The twin as a state folder holds it, for tools that read it while the agent runs (or does not).</summary>
/// <param name="Desired">The desired document as applied.</param>
/// <param name="DesiredVersion">The desired version applied (0: none yet).</param>
/// <param name="Reported">The reported document as the device reported it.</param>
/// <param name="ReportedAcknowledged">The reported document as the server last acknowledged it.</param>
public sealed record DeviceTwinSnapshot(JsonObject Desired, long DesiredVersion, JsonObject Reported, JsonObject ReportedAcknowledged)
{
    /// <summary>True when a reported change waits for the server's acknowledgement.</summary>
    public bool ReportPending => JsonMergePatch.Diff(ReportedAcknowledged, Reported).Count > 0;
}

/// <summary>
/// The device's twin (SPEC §2.5): the desired document as applied, with its version, and the reported document. Both
/// are kept in <c>management.db</c> in the state folder. On every (re)connect the agent asks the server for the desired
/// versions the device missed, applies them in order, each once (a whole document when the server no longer keeps the
/// patches), then sends what of the reported document the server has not acknowledged, and only then raises
/// <see cref="Synchronized"/>. A desired patch the server pushes is applied when it is the next version; any other
/// version makes the device ask again.
/// </summary>
public sealed class DeviceTwin
{
    private readonly ManagementStoreHandle _store;
    private readonly ILogger _logger;
    private readonly Lock _handlersLock = new();
    private List<Func<DesiredTwinChange, CancellationToken, Task>> _handlers = [];
    private StoredTwin? _loaded;
    private volatile bool _synchronized;

    internal DeviceTwin(ManagementStoreHandle store, ILogger<DeviceTwin>? logger = null)
    {
        _store = store;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The twin in memory, read from the state folder on first use.</summary>
    private StoredTwin State
    {
        get => Volatile.Read(ref _loaded) ?? Load();
        set => Volatile.Write(ref _loaded, value);
    }

    /// <summary>Raised after every (re)connect once the twin caught up with the server (desired applied, reports sent).</summary>
    public event EventHandler? Synchronized;

    /// <summary>Raised when a reported change was stored (the agent sends it).</summary>
    internal event Action? ReportQueued;

    /// <summary>A copy of the desired document as applied.</summary>
    public JsonObject Desired => (JsonObject)State.Desired.DeepClone();

    /// <summary>The last desired version applied; 0 before the first.</summary>
    public long DesiredVersion => State.DesiredVersion;

    /// <summary>A copy of the reported document as the device reported it (acknowledged by the server or not yet).</summary>
    public JsonObject Reported => (JsonObject)State.Reported.DeepClone();

    /// <summary>True while connected and caught up with the server since the last (re)connect.</summary>
    public bool IsSynchronized => _synchronized;

    /// <summary>
    /// Registers <paramref name="handler"/> for every desired version the device applies, in version order, each once:
    /// the version is stored as applied after the handlers ran (a handler that throws is logged; the version counts as
    /// applied). Handlers run one at a time, off the connection's receive loop. Dispose the result to unregister.
    /// </summary>
    public IDisposable OnDesiredChanged(Func<DesiredTwinChange, CancellationToken, Task> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        lock (_handlersLock)
        {
            _handlers = [.. _handlers, handler];
        }

        return new Registration(() =>
        {
            lock (_handlersLock)
            {
                _handlers = [.. _handlers.Where(h => h != handler)];
            }
        });
    }

    /// <summary>
    /// Merges <paramref name="patch"/> (a JSON merge patch, RFC 7396) into the reported document and stores it; completes
    /// once stored. The agent sends everything the server has not acknowledged as one patch, so reports made while offline
    /// or before a restart are coalesced and delivered after the next connect. Throws <see cref="ArgumentException"/>
    /// when the patch or the document it makes is over <see cref="TwinLimits"/> (nothing is stored then).
    /// </summary>
    public async Task ReportAsync(JsonObject patch, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(patch);
        await _store.Store.MergeReportedAsync(patch, cancellationToken).ConfigureAwait(false);
        Refresh();
        ReportQueued?.Invoke();
    }

    /// <summary>Reads the twin a state folder holds (creating an empty one when there is none).</summary>
    public static async Task<DeviceTwinSnapshot> ReadAsync(string statePath, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(statePath);
        cancellationToken.ThrowIfCancellationRequested();
        var store = new ManagementStore(statePath, TimeProvider.System, NullLogger.Instance);
        await using (store.ConfigureAwait(false))
        {
            return Snapshot(store.ReadTwin());
        }
    }

    /// <summary>
    /// Stores a reported patch in the state folder for the agent (<c>enroll device run</c>) to deliver, the way
    /// <see cref="ReportAsync"/> does; returns the reported document it makes.
    /// </summary>
    public static async Task<JsonObject> QueueReportAsync(string statePath, JsonObject patch, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(statePath);
        ArgumentNullException.ThrowIfNull(patch);
        var store = new ManagementStore(statePath, TimeProvider.System, NullLogger.Instance);
        await using (store.ConfigureAwait(false))
        {
            return await store.MergeReportedAsync(patch, cancellationToken).ConfigureAwait(false);
        }
    }

    internal DeviceTwinSnapshot Snapshot() => Snapshot(State);

    private static DeviceTwinSnapshot Snapshot(StoredTwin state) => new(
        (JsonObject)state.Desired.DeepClone(), state.DesiredVersion, (JsonObject)state.Reported.DeepClone(), (JsonObject)state.ReportedAcknowledged.DeepClone());

    /// <summary>Reloads the reported side (another process may have queued a report).</summary>
    internal StoredTwin Refresh()
    {
        var stored = _store.Store.ReadTwin();
        var current = State;
        var merged = current with { Reported = stored.Reported, ReportedAcknowledged = stored.ReportedAcknowledged };
        State = merged;
        return merged;
    }

    internal void SetSynchronized(bool synchronized)
    {
        _synchronized = synchronized;
        if (synchronized)
        {
            Synchronized?.Invoke(this, EventArgs.Empty);
        }
    }

    /// <summary>
    /// Applies the answer to a twin/get: the whole document (replacing, one change) or the patches after the applied
    /// version, in order. Returns false when the patches leave a gap (ask again). Called by one loop only (the agent's).
    /// </summary>
    internal async Task<bool> ApplyAsync(TwinGetResponse answer, CancellationToken cancellationToken)
    {
        if (answer.Document is { } document)
        {
            var version = answer.DesiredVersion ?? 0;
            if (version == DesiredVersion && JsonNode.DeepEquals(document, State.Desired))
            {
                return true;
            }

            await CommitAsync(version, (JsonObject)document.DeepClone(), null, cancellationToken).ConfigureAwait(false);
            return true;
        }

        foreach (var patch in (answer.Patches ?? []).OrderBy(p => p.Version))
        {
            if (!await ApplyPatchAsync(patch, cancellationToken).ConfigureAwait(false))
            {
                return false;
            }
        }

        return (answer.DesiredVersion ?? 0) <= DesiredVersion;
    }

    /// <summary>Applies a pushed patch when it is the next version; false when it is not (ask the server).</summary>
    internal async Task<bool> ApplyPushAsync(TwinDesiredPatch patch, CancellationToken cancellationToken)
    {
        return await ApplyPatchAsync(patch, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Records that the server acknowledged the reported document <paramref name="sent"/>.</summary>
    internal async Task AcknowledgedAsync(JsonObject sent, CancellationToken cancellationToken)
    {
        await _store.Store.SaveReportedAcknowledgedAsync(sent, cancellationToken).ConfigureAwait(false);
        Refresh();
    }

    private async Task<bool> ApplyPatchAsync(TwinDesiredPatch patch, CancellationToken cancellationToken)
    {
        var applied = DesiredVersion;
        if (patch.Version <= applied)
        {
            // Already applied (a push that crossed a twin/get, or a redelivery).
            return true;
        }

        if (patch.Version != applied + 1 || patch.Patch is null)
        {
            Log.TwinVersionGap(_logger, applied, patch.Version);
            return false;
        }

        var document = JsonMergePatch.Apply(State.Desired.DeepClone(), patch.Patch.DeepClone()) as JsonObject ?? [];
        await CommitAsync(patch.Version, document, (JsonObject)patch.Patch.DeepClone(), cancellationToken).ConfigureAwait(false);
        return true;
    }

    private async Task CommitAsync(long version, JsonObject document, JsonObject? patch, CancellationToken cancellationToken)
    {
        var previous = State;
        State = previous with { Desired = document };
        List<Func<DesiredTwinChange, CancellationToken, Task>> handlers;
        lock (_handlersLock)
        {
            handlers = _handlers;
        }

        foreach (var handler in handlers)
        {
            try
            {
                await handler(new DesiredTwinChange(version, (JsonObject)document.DeepClone(), (JsonObject?)patch?.DeepClone()), cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Stopping: the version is not stored as applied, so it is applied again after the restart.
                State = previous;
                throw;
            }
#pragma warning disable CA1031 // an application handler's failure is logged; the version still counts as applied
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Log.DesiredHandlerFailed(_logger, version, ex);
            }
        }

        await _store.Store.SaveDesiredAsync(document, version, cancellationToken).ConfigureAwait(false);
        State = State with { Desired = document, DesiredVersion = version };
        Log.DesiredApplied(_logger, version, patch is null);
    }

    private StoredTwin Load()
    {
        var stored = _store.Store.ReadTwin();
        return Interlocked.CompareExchange(ref _loaded, stored, null) ?? stored;
    }

    private sealed class Registration(Action dispose) : IDisposable
    {
        private Action? _dispose = dispose;

        public void Dispose() => Interlocked.Exchange(ref _dispose, null)?.Invoke();
    }
}
