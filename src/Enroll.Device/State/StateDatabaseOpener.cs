using Enroll.Device.Diagnostics;
using Enroll.Shared.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Enroll.Device.State;

/// <summary>
/// Opens a state database, and when the file is corrupt or truncated moves it aside (with its WAL) and starts a fresh
/// one, so a damaged file costs data but never a crash loop.
/// </summary>
internal static class StateDatabaseOpener
{
    public static SqliteDatabase Open(string path, string schema, SqliteDurability durability, TimeProvider timeProvider, ILogger logger)
    {
        try
        {
            return OpenChecked(path, schema, durability);
        }
        catch (SqliteException ex) when (IsCorruption(ex))
        {
            var aside = MoveAside(path, timeProvider);
            Log.StateDatabaseCorrupt(logger, path, aside, ex.Message);
            return OpenChecked(path, schema, durability);
        }
    }

    private static SqliteDatabase OpenChecked(string path, string schema, SqliteDurability durability)
    {
        var database = new SqliteDatabase(path, durability);
        try
        {
            using (var connection = database.OpenRead())
            using (var command = connection.CreateCommand())
            {
                command.CommandText = "PRAGMA quick_check;";
                var result = command.ExecuteScalar() as string;
                if (!string.Equals(result, "ok", StringComparison.Ordinal))
                {
                    throw new SqliteException($"integrity check failed: {result}", 11);
                }
            }

            database.ExecuteScript(schema);
            return database;
        }
        catch
        {
            database.DisposeAsync().AsTask().GetAwaiter().GetResult();
            SqliteConnection.ClearAllPools();
            throw;
        }
    }

    private static bool IsCorruption(SqliteException ex) =>
        ex.SqliteErrorCode is 11 /* SQLITE_CORRUPT */ or 26 /* SQLITE_NOTADB */;

    private static string MoveAside(string path, TimeProvider timeProvider)
    {
        SqliteConnection.ClearAllPools();
        var stamp = timeProvider.GetUtcNow().ToString("yyyyMMddTHHmmssZ", System.Globalization.CultureInfo.InvariantCulture);
        var aside = $"{path}.corrupt-{stamp}";
        File.Move(path, aside, overwrite: true);
        foreach (var suffix in new[] { "-wal", "-shm" })
        {
            if (File.Exists(path + suffix))
            {
                File.Move(path + suffix, aside + suffix, overwrite: true);
            }
        }

        return aside;
    }
}
