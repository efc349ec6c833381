using System.Globalization;

namespace Enroll.Shared.Files;

/// <summary>The process's open-file limit (<c>ulimit -n</c>), and the broker connections that leave room below it.</summary>
internal static class DescriptorLimit
{
    /// <summary>Descriptors kept for everything that is not a broker connection: SQLite, the HTTP API, key files, the runtime.</summary>
    public const int Reserve = 128;

    /// <summary>The connection cap where the limit cannot be read (not Linux), or is unlimited.</summary>
    public const int Fallback = 100_000;

    /// <summary>The soft limit on open files from <c>/proc/self/limits</c>, or null where it cannot be read or is unlimited.</summary>
    public static long? Read()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/limits"))
            {
                if (!line.StartsWith("Max open files", StringComparison.Ordinal))
                {
                    continue;
                }

                var fields = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return fields.Length > 0 && long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var soft) ? soft : null;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    /// <summary>Descriptors this process has open now (<c>/proc/self/fd</c>), or null where that cannot be read.</summary>
    public static int? InUse()
    {
        try
        {
            return Directory.GetFileSystemEntries("/proc/self/fd").Length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The most broker connections for a descriptor limit of <paramref name="limit"/> with <paramref name="inUse"/>
    /// already open (the runtime maps its libraries, and more): 80 % of the limit, and at least <see cref="Reserve"/>
    /// below what is left (never fewer than 16).
    /// </summary>
    public static int ConnectionCap(long? limit, int? inUse) =>
        limit is not { } value ? Fallback : (int)Math.Clamp(Math.Min(value * 8 / 10, value - (inUse ?? 0) - Reserve), 16, Fallback);
}
