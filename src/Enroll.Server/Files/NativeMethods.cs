using System.Runtime.InteropServices;

namespace Enroll.Server.Files;

/// <summary>The POSIX calls <see cref="FolderBlobStore"/> needs to make a folder's entries durable (Linux and macOS).</summary>
internal static partial class NativeMethods
{
    /// <summary>O_RDONLY | O_DIRECTORY (Linux 0x10000, macOS 0x100000).</summary>
    public static readonly int ReadOnlyDirectory = OperatingSystem.IsMacOS() ? 0x100000 : 0x10000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int Open(byte[] path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int Close(int fd);
}
