using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Enroll.Device;
using Microsoft.Data.Sqlite;

namespace Enroll.Cli.Infrastructure;

/// <summary>A state database that cannot be read: which file and why.</summary>
internal sealed record DamagedFile(string File, string Error);

/// <summary>
/// Reads a device state folder for <c>enroll device status</c> without changing anything in it: the databases are
/// opened read-only (never created, repaired or moved aside, unlike the device library does when it starts), and a
/// database that cannot be read is reported as damaged instead of thrown.
/// </summary>
internal static class DeviceStateReader
{
    public const string OutboxFileName = "outbox.db";
    public const string HealthFileName = "health.json";

    /// <summary>The stored credentials, null when there are none, or the damage that keeps them from being read.</summary>
    public static (DeviceCredentials? Credentials, DamagedFile? Damage) ReadCredentials(string statePath)
    {
        var path = Path.Combine(statePath, SqliteCredentialStore.FileName);
        if (!File.Exists(path))
        {
            return (null, null);
        }

        try
        {
            using var connection = OpenReadOnly(path);
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT json FROM credentials WHERE id = 1";
            if (command.ExecuteScalar() is not string json)
            {
                return (null, null);
            }

            return (JsonSerializer.Deserialize(json, CliJsonContext.Default.DeviceCredentials), null);
        }
        catch (SqliteException ex)
        {
            return (null, new DamagedFile(SqliteCredentialStore.FileName, Describe(ex)));
        }
        catch (JsonException ex)
        {
            return (null, new DamagedFile(SqliteCredentialStore.FileName, $"the stored credentials are not valid JSON: {ex.Message}"));
        }
    }

    /// <summary>The outbox's statistics, null when there is no outbox, or the damage that keeps them from being read.</summary>
    public static (OutboxStatistics? Statistics, DamagedFile? Damage) ReadOutbox(string statePath)
    {
        if (!File.Exists(Path.Combine(statePath, OutboxFileName)))
        {
            return (null, null);
        }

        try
        {
            return (DeviceOutbox.ReadStatistics(statePath), null);
        }
        catch (SqliteException ex)
        {
            return (null, new DamagedFile(OutboxFileName, Describe(ex)));
        }
    }

    /// <summary>
    /// What the last device process in the folder wrote to <c>health.json</c> (see the device library's health file: JSON
    /// padded with spaces to a fixed size and overwritten in place), or null when none ever ran or the file is unreadable.
    /// </summary>
    public static HealthFile? ReadHealth(string statePath)
    {
        var path = Path.Combine(statePath, HealthFileName);
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (!File.Exists(path))
                {
                    return null;
                }

                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                var text = reader.ReadToEnd().Trim();
                return text.Length == 0 ? null : JsonSerializer.Deserialize(text, CliJsonContext.Default.HealthFile);
            }
            catch (Exception ex) when (attempt < 3 && ex is JsonException or IOException)
            {
                // Caught the agent in the middle of overwriting it: read again.
            }
            catch (Exception ex) when (ex is JsonException or IOException or UnauthorizedAccessException)
            {
                return null;
            }
        }
    }

    /// <summary>True when the process that wrote <paramref name="health"/> says it runs and still does (not merely a process with its PID).</summary>
    public static bool IsAlive(HealthFile health)
    {
        if (!health.Running || health.Pid <= 0)
        {
            return false;
        }

        try
        {
            // A process that started after the file was last written is another one that got the PID again.
            using var process = Process.GetProcessById(health.Pid);
            return !process.HasExited && process.StartTime.ToUniversalTime() <= health.UpdatedAt.UtcDateTime.AddSeconds(1);
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary><c>MessageRefused</c> → <c>message_refused</c>.</summary>
    public static string SnakeCase(string kind) => JsonNamingPolicy.SnakeCaseLower.ConvertName(kind);

    private static SqliteConnection OpenReadOnly(string path)
    {
        var builder = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false };
        var connection = new SqliteConnection(builder.ToString());
        try
        {
            connection.Open();
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private static string Describe(SqliteException ex) => ex.SqliteErrorCode switch
    {
        11 => $"corrupt ({ex.Message})",
        26 => "not a database (garbage or overwritten)",
        1 when ex.Message.Contains("no such table", StringComparison.Ordinal) => "empty or not a device database (its tables are missing)",
        _ => ex.Message,
    };
}

/// <summary>The device's <c>health.json</c>, as the device library writes it (snake_case, kinds by name).</summary>
internal sealed record HealthFile
{
    public int Pid { get; init; }

    public DateTimeOffset UpdatedAt { get; init; }

    public bool Running { get; init; }

    public IReadOnlyList<HealthFileFault> Faults { get; init; } = [];
}

/// <summary>One fault in <see cref="HealthFile"/>.</summary>
internal sealed record HealthFileFault
{
    public string Component { get; init; } = string.Empty;

    /// <summary>A <see cref="DeviceFaultKind"/> name, such as <c>MessageRefused</c>.</summary>
    public string Kind { get; init; } = string.Empty;

    public string Message { get; init; } = string.Empty;

    public DateTimeOffset Since { get; init; }

    public int Occurrences { get; init; }
}
