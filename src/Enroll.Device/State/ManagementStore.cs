using System.Globalization;
using System.Text.Json.Nodes;
using Enroll.Protocol.Twins;
using Enroll.Shared.Storage;
using Microsoft.Extensions.Logging;

namespace Enroll.Device.State;

/// <summary>The device's twin as the state folder holds it: JSON objects, and the desired version they were applied at.</summary>
/// <param name="Desired">The desired document as applied.</param>
/// <param name="DesiredVersion">The last desired version applied (0: none).</param>
/// <param name="Reported">The reported document as the device reported it, sent or not.</param>
/// <param name="ReportedAcknowledged">The reported document as the server last acknowledged it.</param>
internal sealed record StoredTwin(JsonObject Desired, long DesiredVersion, JsonObject Reported, JsonObject ReportedAcknowledged)
{
    /// <summary>What the server has not acknowledged yet: a merge patch from the acknowledged to the local reported document (empty: nothing).</summary>
    public JsonObject UnacknowledgedReport() => JsonMergePatch.Diff(ReportedAcknowledged, Reported);
}

/// <summary>A command's result as the device keeps it: re-sent, not re-run, when the command is delivered again.</summary>
internal sealed record StoredCommandResult(string CommandId, string Name, string Status, JsonNode? Payload, string? Message, DateTimeOffset FinishedAt, bool Acknowledged);

/// <summary>
/// <c>management.db</c> in the state folder (SQLite, WAL, <c>synchronous=FULL</c>): the twin (desired document and the
/// version applied, the reported document and what of it the server acknowledged) and the results of executed commands
/// (the newest <see cref="KeptResults"/> within <see cref="ResultRetention"/>). The agent and one-shot CLI commands
/// (<c>enroll device report</c>) may share the file; every change is one transaction.
/// </summary>
internal sealed class ManagementStore : IAsyncDisposable
{
    public const string FileName = "management.db";

    /// <summary>The stored status of a command whose handler runs (or ran when the device stopped).</summary>
    public const string Running = "running";

    /// <summary>Executed commands remembered at most (a redelivery of an older one would run it again).</summary>
    public const int KeptResults = 1_000;

    /// <summary>How long an executed command is remembered at most.</summary>
    public static readonly TimeSpan ResultRetention = TimeSpan.FromDays(7);

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS twin (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            desired TEXT NOT NULL,
            desired_version INTEGER NOT NULL,
            reported TEXT NOT NULL,
            reported_acknowledged TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        INSERT OR IGNORE INTO twin (id, desired, desired_version, reported, reported_acknowledged, updated_at) VALUES (1, '{}', 0, '{}', '{}', '');
        CREATE TABLE IF NOT EXISTS command_results (
            command_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            payload TEXT,
            message TEXT,
            finished_at INTEGER NOT NULL,
            acknowledged INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS command_results_finished ON command_results (finished_at);
        """;

    private readonly SqliteDatabase _database;
    private readonly TimeProvider _timeProvider;

    public ManagementStore(string statePath, TimeProvider timeProvider, ILogger logger)
    {
        _timeProvider = timeProvider;
        Directory.CreateDirectory(statePath);
        Path = System.IO.Path.Combine(System.IO.Path.GetFullPath(statePath), FileName);
        _database = StateDatabaseOpener.Open(Path, Schema, SqliteDurability.Full, timeProvider, logger);
    }

    public string Path { get; }

    /// <summary>Changes whenever anything commits to this file, from this process or another (<see cref="SqliteDatabase.ChangeVersion"/>).</summary>
    public long ChangeVersion() => _database.ChangeVersion();

    /// <summary>The twin as stored now (another process may have changed it since this one last looked).</summary>
    public StoredTwin ReadTwin() => _database.Read(context =>
    {
        using var reader = context.Command("SELECT desired, desired_version, reported, reported_acknowledged FROM twin WHERE id = 1").ExecuteReader();
        reader.Read();
        return new StoredTwin(Parse(reader.GetString(0)), reader.GetInt64(1), Parse(reader.GetString(2)), Parse(reader.GetString(3)));
    });

    /// <summary>Stores the desired document applied at <paramref name="version"/>.</summary>
    public Task SaveDesiredAsync(JsonObject desired, long version, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context => context.Execute(
                "UPDATE twin SET desired = $desired, desired_version = $version, updated_at = $now WHERE id = 1",
                ("$desired", desired.ToJsonString()),
                ("$version", version),
                ("$now", Now())),
            cancellationToken);

    /// <summary>
    /// Merges <paramref name="patch"/> into the stored reported document in one transaction, refusing (and changing
    /// nothing) when the patch or the document it makes is over <see cref="TwinLimits"/>; returns the new reported document.
    /// </summary>
    public Task<JsonObject> MergeReportedAsync(JsonObject patch, CancellationToken cancellationToken)
    {
        if (TwinLimits.CheckPatch(patch) is { } refusal)
        {
            throw new ArgumentException($"the reported patch is refused: {refusal}", nameof(patch));
        }

        var text = patch.ToJsonString();
        return _database.WriteAsync(
            context =>
            {
                var current = Parse((string)context.Command("SELECT reported FROM twin WHERE id = 1").ExecuteScalar()!);
                var merged = JsonMergePatch.Apply(current, JsonNode.Parse(text)) as JsonObject ?? [];
                if (TwinLimits.CheckDocument(merged) is { } documentRefusal)
                {
                    throw new ArgumentException($"the reported patch is refused: the document it makes is {documentRefusal}", nameof(patch));
                }

                context.Execute("UPDATE twin SET reported = $reported, updated_at = $now WHERE id = 1", ("$reported", merged.ToJsonString()), ("$now", Now()));
                return merged;
            },
            cancellationToken);
    }

    /// <summary>Records that the server acknowledged the reported document <paramref name="sent"/> (a later local change stays unacknowledged).</summary>
    public Task SaveReportedAcknowledgedAsync(JsonObject sent, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context => context.Execute("UPDATE twin SET reported_acknowledged = $sent, updated_at = $now WHERE id = 1", ("$sent", sent.ToJsonString()), ("$now", Now())),
            cancellationToken);

    /// <summary>The stored result of <paramref name="commandId"/>, if the device executed it (and still remembers it).</summary>
    public StoredCommandResult? FindResult(string commandId) => _database.Read(context =>
    {
        using var reader = context.Command(
            "SELECT command_id, name, status, payload, message, finished_at, acknowledged FROM command_results WHERE command_id = $id",
            ("$id", commandId)).ExecuteReader();
        return reader.Read() ? ReadResult(reader) : null;
    });

    /// <summary>Results the server has not acknowledged yet, oldest first.</summary>
    public IReadOnlyList<StoredCommandResult> UnacknowledgedResults() => _database.Read(context =>
    {
        using var reader = context.Command(
            "SELECT command_id, name, status, payload, message, finished_at, acknowledged FROM command_results WHERE acknowledged = 0 AND status <> $running ORDER BY finished_at, command_id", ("$running", Running)).ExecuteReader();
        var results = new List<StoredCommandResult>();
        while (reader.Read())
        {
            results.Add(ReadResult(reader));
        }

        return results;
    });

    /// <summary>
    /// Records that <paramref name="commandId"/> starts running (status <see cref="Running"/>) and returns null; or, when
    /// the device already ran (or runs) it, returns what is stored and changes nothing. Forgets results beyond
    /// <see cref="KeptResults"/> or older than <see cref="ResultRetention"/>.
    /// </summary>
    public Task<StoredCommandResult?> TryBeginAsync(string commandId, string name, CancellationToken cancellationToken)
    {
        var now = _timeProvider.GetUtcNow();
        var cutoff = (now - ResultRetention).ToUnixTimeMilliseconds();
        return _database.WriteAsync(
            context =>
            {
                var inserted = context.Execute(
                    "INSERT OR IGNORE INTO command_results (command_id, name, status, payload, message, finished_at, acknowledged) VALUES ($id, $name, $status, NULL, NULL, $at, 0)",
                    ("$id", commandId),
                    ("$name", name),
                    ("$status", Running),
                    ("$at", now.ToUnixTimeMilliseconds()));
                if (inserted == 0)
                {
                    using var reader = context.Command(
                        "SELECT command_id, name, status, payload, message, finished_at, acknowledged FROM command_results WHERE command_id = $id",
                        ("$id", commandId)).ExecuteReader();
                    reader.Read();
                    return ReadResult(reader);
                }

                context.Execute("DELETE FROM command_results WHERE finished_at < $cutoff AND status <> $running", ("$cutoff", cutoff), ("$running", Running));
                context.Execute(
                    "DELETE FROM command_results WHERE command_id IN (SELECT command_id FROM command_results ORDER BY finished_at DESC, command_id DESC LIMIT -1 OFFSET $keep)",
                    ("$keep", KeptResults));
                return (StoredCommandResult?)null;
            },
            cancellationToken);
    }

    /// <summary>Stores the result of a command that was running; it waits to be sent.</summary>
    public Task FinishAsync(string commandId, string status, JsonNode? payload, string? message, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context => context.Execute(
                "UPDATE command_results SET status = $status, payload = $payload, message = $message, finished_at = $at, acknowledged = 0 WHERE command_id = $id AND status = $running",
                ("$id", commandId),
                ("$status", status),
                ("$payload", payload?.ToJsonString()),
                ("$message", message),
                ("$at", _timeProvider.GetUtcNow().ToUnixTimeMilliseconds()),
                ("$running", Running)),
            cancellationToken);

    /// <summary>
    /// Turns commands that were running when the device last stopped into failures with <paramref name="message"/> (they
    /// are not run again); returns how many.
    /// </summary>
    public Task<int> InterruptRunningAsync(string message, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context => context.Execute(
                "UPDATE command_results SET status = 'failed', message = $message, acknowledged = 0 WHERE status = $running",
                ("$message", message),
                ("$running", Running)),
            cancellationToken);

    /// <summary>Marks a finished command's result as to be sent again (the server delivered the command again: it has not got it).</summary>
    public Task ResendAsync(string commandId, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context => context.Execute("UPDATE command_results SET acknowledged = 0 WHERE command_id = $id AND status <> $running", ("$id", commandId), ("$running", Running)),
            cancellationToken);

    /// <summary>Records that the server acknowledged the result of <paramref name="commandId"/>.</summary>
    public Task SaveResultAcknowledgedAsync(string commandId, CancellationToken cancellationToken) =>
        _database.WriteAsync(
            context => context.Execute("UPDATE command_results SET acknowledged = 1 WHERE command_id = $id", ("$id", commandId)),
            cancellationToken);

    public ValueTask DisposeAsync() => _database.DisposeAsync();

    private static StoredCommandResult ReadResult(Microsoft.Data.Sqlite.SqliteDataReader reader) => new(
        reader.GetString(0),
        reader.GetString(1),
        reader.GetString(2),
        reader.IsDBNull(3) ? null : JsonNode.Parse(reader.GetString(3)),
        reader.IsDBNull(4) ? null : reader.GetString(4),
        DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)),
        reader.GetInt64(6) != 0);

    private static JsonObject Parse(string json) =>
        JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException("a stored twin document is not a JSON object");

    private string Now() => _timeProvider.GetUtcNow().ToString("O", CultureInfo.InvariantCulture);
}

/// <summary>
/// Opens <see cref="ManagementStore"/> on first use rather than when the services are built, so a state folder that
/// cannot hold it right now (a full disk) fails only the twin and commands, retried by their supervisor, never the
/// agent's start. A failed open is tried again on the next use.
/// </summary>
internal sealed class ManagementStoreHandle(Func<ManagementStore> open) : IAsyncDisposable
{
    private readonly Lock _lock = new();
    private ManagementStore? _store;
    private bool _disposed;

    public ManagementStore Store
    {
        get
        {
            if (Volatile.Read(ref _store) is { } store)
            {
                return store;
            }

            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return _store ??= open();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        ManagementStore? store;
        lock (_lock)
        {
            _disposed = true;
            store = _store;
        }

        if (store is not null)
        {
            await store.DisposeAsync().ConfigureAwait(false);
        }
    }
}
