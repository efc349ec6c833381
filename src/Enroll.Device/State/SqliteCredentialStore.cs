using System.Text.Json;
using Enroll.Device.State;
using Enroll.Shared.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Enroll.Device;

/// <summary>
/// The default <see cref="ICredentialStore"/>: one row in <c>device.db</c> (SQLite, WAL, <c>synchronous=FULL</c>) in
/// the state folder, which is created readable by the owner only.
/// </summary>
public sealed class SqliteCredentialStore : ICredentialStore, IAsyncDisposable
{
    /// <summary>The file name of the credential database inside the state folder.</summary>
    public const string FileName = "device.db";

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS credentials (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            json TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """;

    private readonly SqliteDatabase _database;
    private readonly TimeProvider _timeProvider;

    /// <summary>Opens (or creates) the store in <paramref name="statePath"/>.</summary>
    public SqliteCredentialStore(string statePath, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        _timeProvider = timeProvider ?? TimeProvider.System;
        StatePath = Path.GetFullPath(statePath);
        _database = StateDatabaseOpener.Open(
            Path.Combine(StatePath, FileName), Schema, SqliteDurability.Full, _timeProvider, logger ?? NullLogger.Instance);
    }

    /// <summary>The state folder.</summary>
    public string StatePath { get; }

    /// <inheritdoc />
    public ValueTask<DeviceCredentials?> LoadAsync(CancellationToken cancellationToken = default)
    {
        using var connection = _database.OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT json FROM credentials WHERE id = 1";
        var json = command.ExecuteScalar() as string;
        if (json is null)
        {
            return ValueTask.FromResult<DeviceCredentials?>(null);
        }

        try
        {
            return ValueTask.FromResult(JsonSerializer.Deserialize(json, DeviceStateJsonContext.Default.DeviceCredentials));
        }
        catch (JsonException ex)
        {
            throw new EnrollException($"the device state in {StatePath} cannot be read: {ex.Message}", ex);
        }
    }

    /// <inheritdoc />
    public async ValueTask SaveAsync(DeviceCredentials credentials, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(credentials);
        var json = JsonSerializer.Serialize(credentials, DeviceStateJsonContext.Default.DeviceCredentials);
        var now = _timeProvider.GetUtcNow().ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        await _database.WriteAsync(
            context => context.Execute(
                "INSERT INTO credentials (id, json, updated_at) VALUES (1, $json, $now) ON CONFLICT (id) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
                ("$json", json),
                ("$now", now)),
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask ClearAsync(CancellationToken cancellationToken = default) =>
        await _database.WriteAsync(context => context.Execute("DELETE FROM credentials"), cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _database.DisposeAsync();
}
