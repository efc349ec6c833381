using System.Globalization;

namespace Enroll.Shared.Files;

/// <summary>
/// Makes one process at a time the owner of a folder (a server's data folder, a device's state folder). The lock is the
/// kernel's (an exclusive <c>flock</c> on <c>{folder}/{name}.lock</c>, released when the process ends however it ends),
/// and the owner writes its PID and command next to it so that a second process can say who holds the folder.
/// </summary>
internal sealed class FolderLock : IDisposable
{
    private readonly FileStream _lock;
    private readonly string _ownerPath;

    private FolderLock(FileStream lockStream, string ownerPath)
    {
        _lock = lockStream;
        _ownerPath = ownerPath;
    }

    /// <summary>The folder this lock owns.</summary>
    public required string Folder { get; init; }

    /// <summary>
    /// Takes the lock named <paramref name="name"/> on <paramref name="folder"/> (created owner-only when missing), or throws
    /// <see cref="FolderLockedException"/> naming the process that holds it.
    /// </summary>
    public static FolderLock Acquire(string folder, string name, string purpose)
    {
        var full = OwnerOnlyFiles.EnsureDirectory(folder);
        var lockPath = Path.Combine(full, name + ".lock");
        var ownerPath = Path.Combine(full, name + ".owner");
        FileStream stream;
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None };
            if (OwnerOnlyFiles.Supported)
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            stream = new FileStream(lockPath, options);
        }
        catch (IOException) when (File.Exists(lockPath))
        {
            throw new FolderLockedException(full, ReadOwner(ownerPath));
        }

        try
        {
            // Who holds the folder, for a second process's error message. Not flushed to the disk: the lock dies with the
            // process however it ends, so a note that did not survive a power cut names nobody who still holds it.
            OwnerOnlyFiles.WriteAllText(ownerPath, string.Create(CultureInfo.InvariantCulture, $"{Environment.ProcessId} {purpose}\n"), durable: false);
        }
        catch (IOException)
        {
            // A full disk must not stop the owner from owning: the lock itself is what counts.
        }

        return new FolderLock(stream, ownerPath) { Folder = full };
    }

    public void Dispose()
    {
        try
        {
            File.Delete(_ownerPath);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        _lock.Dispose();
    }

    private static FolderOwner? ReadOwner(string ownerPath)
    {
        try
        {
            var text = File.ReadAllText(ownerPath).Trim();
            var space = text.IndexOf(' ', StringComparison.Ordinal);
            var pidText = space < 0 ? text : text[..space];
            return int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                ? new FolderOwner(pid, space < 0 ? string.Empty : text[(space + 1)..])
                : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

/// <summary>The process that holds a folder.</summary>
internal sealed record FolderOwner(int Pid, string Purpose);

/// <summary>Another process owns the folder.</summary>
internal sealed class FolderLockedException : IOException
{
    public FolderLockedException(string folder, FolderOwner? owner)
        : base(owner is null
            ? $"{folder} is in use by another process"
            : $"{folder} is in use by process {owner.Pid}{(owner.Purpose.Length == 0 ? string.Empty : " (" + owner.Purpose + ")")}")
    {
        Folder = folder;
        Owner = owner;
    }

    public FolderLockedException()
    {
        Folder = string.Empty;
    }

    public FolderLockedException(string message)
        : base(message)
    {
        Folder = string.Empty;
    }

    public FolderLockedException(string message, Exception innerException)
        : base(message, innerException)
    {
        Folder = string.Empty;
    }

    public string Folder { get; }

    public FolderOwner? Owner { get; }
}
