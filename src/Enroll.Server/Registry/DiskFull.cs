using Microsoft.Data.Sqlite;

namespace Enroll.Server.Registry;

/// <summary>Recognises a write that failed because the registry's disk (or its quota) is full.</summary>
internal static class DiskFull
{
    private const int SqliteFull = 13;
    private const int SqliteIoErr = 10;
    private const int Enospc = 28;
    private const int Edquot = 122;

    // SQLITE_IOERR_WRITE, _FSYNC, _TRUNCATE, _DIR_FSYNC and _SHMSIZE: what a full disk looks like when SQLite does not say SQLITE_FULL.
    private static readonly int[] FullDiskIoErrors = [778, 1034, 1546, 1290, 4874];

    public static bool Is(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            switch (current)
            {
                case SqliteException { SqliteErrorCode: SqliteFull }:
                    return true;
                case SqliteException { SqliteErrorCode: SqliteIoErr } io when FullDiskIoErrors.Contains(io.SqliteExtendedErrorCode):
                    return true;
                case Npgsql.PostgresException { SqlState: Npgsql.PostgresErrorCodes.DiskFull }:
                    return true;
                case IOException io when io.HResult is Enospc or Edquot:
                    return true;
            }
        }

        return false;
    }
}
