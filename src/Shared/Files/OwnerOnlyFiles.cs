using System.Runtime.Versioning;

namespace Enroll.Shared.Files;

/// <summary>Creates folders and files that only the owning user can read, for keys, tokens and state.</summary>
internal static class OwnerOnlyFiles
{
    private const UnixFileMode OwnerReadWrite = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode OwnerAll = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>True on systems with Unix permissions.</summary>
    [UnsupportedOSPlatformGuard("windows")]
    public static bool Supported => !OperatingSystem.IsWindows();

    /// <summary>Creates <paramref name="path"/> (mode 0700) if missing and returns its full path.</summary>
    public static string EnsureDirectory(string path)
    {
        var full = Path.GetFullPath(path);
        if (!Directory.Exists(full))
        {
            if (Supported)
            {
                Directory.CreateDirectory(full, OwnerAll);
            }
            else
            {
                Directory.CreateDirectory(full);
            }
        }

        return full;
    }

    /// <summary>
    /// Writes <paramref name="contents"/> atomically to a file of mode 0600: readers see the old contents or the new, never
    /// a part. <paramref name="durable"/> also flushes it to the disk before it replaces the old file, so it survives a
    /// power cut; leave that to what must (keys, credentials): on a device's flash an fsync costs milliseconds.
    /// </summary>
    public static void WriteAllText(string path, string contents, bool durable = true)
    {
        var temp = path + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (Supported)
        {
            options.UnixCreateMode = OwnerReadWrite;
        }

        using (var stream = new FileStream(temp, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(contents);
            writer.Flush();
            stream.Flush(flushToDisk: durable);
        }

        if (Supported)
        {
            File.SetUnixFileMode(temp, OwnerReadWrite);
        }

        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Creates an empty file of mode 0600 if it does not exist.</summary>
    public static void Touch(string path)
    {
        if (File.Exists(path))
        {
            return;
        }

        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (Supported)
        {
            options.UnixCreateMode = OwnerReadWrite;
        }

        try
        {
            using var _ = new FileStream(path, options);
        }
        catch (IOException) when (File.Exists(path))
        {
            // Another process created it first; that is fine.
        }
    }

    /// <summary>True when group or others may read or write <paramref name="path"/>.</summary>
    public static bool IsAccessibleByOthers(string path)
    {
        if (!Supported)
        {
            return false;
        }

        var mode = File.GetUnixFileMode(path);
        const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;
        return (mode & others) != 0;
    }
}
