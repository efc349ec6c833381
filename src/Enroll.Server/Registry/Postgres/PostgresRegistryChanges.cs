using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Enroll.Server.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Enroll.Server.Registry;

/// <summary>
/// The change feed of a PostgreSQL registry shared by several instances: an announcement is
/// <c>pg_notify('enroll_changes', '{"kind":...,"id":...}')</c>, and a listener on its own connection
/// (<c>LISTEN enroll_changes</c>) passes what any instance announced to this one's observers. PostgreSQL delivers no
/// notification to a session that is not connected, so after every (re)connect the listener reports
/// <see cref="RegistryChange.Everything"/>; it reconnects with doubling, jittered waits up to <see cref="MaxBackoff"/>.
/// </summary>
internal sealed class PostgresRegistryChanges : BackgroundService, IRegistryChanges
{
    /// <summary>The notification channel.</summary>
    public const string Channel = "enroll_changes";

    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    private readonly NpgsqlDataSource _dataSource;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<PostgresRegistryChanges> _logger;
    private readonly Func<double> _random;
    private readonly RegistryChangeObservers _observers = new();
    private readonly TaskCompletionSource _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public PostgresRegistryChanges(string connectionString, string? password, TimeProvider timeProvider, ILogger<PostgresRegistryChanges> logger, Func<double>? random = null)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        if (string.IsNullOrEmpty(builder.ConnectionStringBuilder.Password) && !string.IsNullOrEmpty(password))
        {
            builder.ConnectionStringBuilder.Password = password;
        }

        builder.ConnectionStringBuilder.ApplicationName ??= "enroll-server";

        // A listener waits for hours without a query: keep-alives notice a connection that died silently.
        builder.ConnectionStringBuilder.KeepAlive = 5;
        _dataSource = builder.Build();
        _timeProvider = timeProvider;
        _logger = logger;
        _random = random ?? (() => RandomNumberGenerator.GetInt32(1000) / 1000.0);
    }

    /// <summary>Completes once the listener first listens (after it, every announcement reaches this instance).</summary>
    public Task Listening => _listening.Task;

    public async Task AnnounceAsync(RegistryChange change, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(change);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand("SELECT pg_notify($1, $2)", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = Channel });
        command.Parameters.Add(new NpgsqlParameter { Value = Serialize(change) });
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public IDisposable Observe(Func<RegistryChange, Task> observer) => _observers.Add(observer);

    public override void Dispose()
    {
        base.Dispose();
        _dataSource.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _dataSource.OpenConnectionAsync(stoppingToken).ConfigureAwait(false);
                var received = System.Threading.Channels.Channel.CreateUnbounded<string>(new() { SingleReader = true });
                connection.Notification += (_, e) => received.Writer.TryWrite(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken).ConfigureAwait(false);
                }

                if (failures > 0)
                {
                    Log.RegistryChangesReconnected(_logger, failures);
                }

                failures = 0;
                _listening.TrySetResult();

                // Whatever was announced while this instance was not listening is lost: reload everything.
                await DeliverAsync(new RegistryChange(RegistryChange.Everything)).ConfigureAwait(false);
                while (true)
                {
                    await connection.WaitAsync(stoppingToken).ConfigureAwait(false);
                    while (received.Reader.TryRead(out var payload))
                    {
                        if (Deserialize(payload) is { } change)
                        {
                            await DeliverAsync(change).ConfigureAwait(false);
                        }
                        else
                        {
                            Log.RegistryChangeUnreadable(_logger, payload.Length);
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException)
            {
                failures++;
                var delay = Backoff(failures);
                Log.RegistryChangesLost(_logger, ex.Message, delay);
                try
                {
                    await Task.Delay(delay, _timeProvider, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>The wait before reconnect attempt <paramref name="failures"/> + 1: doubling from 250 ms to 30 s, spread over [½, 1) of that.</summary>
    internal TimeSpan Backoff(int failures)
    {
        var ticks = Math.Min(MaxBackoff.Ticks, FirstBackoff.Ticks * Math.Pow(2, Math.Clamp(failures - 1, 0, 30)));
        return TimeSpan.FromTicks((long)(ticks * (0.5 + (_random() * 0.5))));
    }

    internal static string Serialize(RegistryChange change)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("kind", change.Kind);
            if (change.Id is null)
            {
                writer.WriteNull("id");
            }
            else
            {
                writer.WriteString("id", change.Id);
            }

            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    internal static RegistryChange? Deserialize(string payload)
    {
        try
        {
            using var document = JsonDocument.Parse(payload);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("kind", out var kind) || kind.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(kind.GetString()))
            {
                return null;
            }

            var id = root.TryGetProperty("id", out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
            return new RegistryChange(kind.GetString()!, id);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private async Task DeliverAsync(RegistryChange change)
    {
        foreach (var failure in await _observers.NotifyAsync(change).ConfigureAwait(false))
        {
            Log.RegistryChangeObserverFailed(_logger, change.Kind, failure);
        }
    }
}
