using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Enroll.Protocol;
using Enroll.Shared.Files;
using Microsoft.Win32.SafeHandles;

namespace Enroll.Server.Files;

/// <summary>
/// <see cref="IBlobStore"/> in a folder: staged transfers in <c>{root}/staging/{key}.part</c>, stored blobs in
/// <c>{root}/stored/{key}</c> (the two never share a folder, whatever the device and transfer IDs). A chunk is written at
/// its offset and flushed to the disk before its write completes, so the acknowledgement that follows survives a power
/// loss; a commit flushes the staged file, renames it into place and flushes the folder, so a stored blob is whole or
/// absent. Several servers may share the folder (a network file system with POSIX rename): every name is derived from
/// the key, nothing is cached but open flushes.
/// </summary>
internal sealed class FolderBlobStore : IBlobStore
{
    private const string StagingFolder = "staging";
    private const string StoredFolder = "stored";
    private const string PartSuffix = ".part";

    // Concurrent chunks of one staged file share a flush: a flush started after a chunk's write covers that chunk too.
    private readonly ConcurrentDictionary<string, FlushGate> _gates = new(StringComparer.Ordinal);

    public FolderBlobStore(string root)
    {
        // Devices' data: readable by the server's user only, like the registry.
        Root = OwnerOnlyFiles.EnsureDirectory(root);
        OwnerOnlyFiles.EnsureDirectory(Path.Combine(Root, StagingFolder));
        OwnerOnlyFiles.EnsureDirectory(Path.Combine(Root, StoredFolder));
    }

    /// <summary>The folder holding both areas.</summary>
    public string Root { get; }

    /// <summary>Flushes to the disk so far (for the measurement of coalescing).</summary>
    public long Flushes => Interlocked.Read(ref _flushes);

    private long _flushes;

    public async ValueTask WriteChunkAsync(string stagingKey, long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        var path = StagedPath(stagingKey);
        var gate = _gates.GetOrAdd(path, _ => new FlushGate());
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            handle = CreateStaged(path);
        }

        using (handle)
        {
            cancellationToken.ThrowIfCancellationRequested();
            RandomAccess.Write(handle, data.Span, offset);
            await gate.FlushAsync(handle, this).ConfigureAwait(false);
        }
    }

    public Stream? OpenStaged(string stagingKey)
    {
        try
        {
            return new FileStream(StagedPath(stagingKey), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public Task CommitAsync(string stagingKey, string blobKey, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var staged = StagedPath(stagingKey);
        var stored = StoredPath(blobKey);
        if (!File.Exists(staged))
        {
            if (File.Exists(stored))
            {
                return Task.CompletedTask;
            }

            throw new FileNotFoundException($"the staged transfer '{stagingKey}' is gone and no blob '{blobKey}' was stored from it", staged);
        }

        using (var handle = File.OpenHandle(staged, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete))
        {
            // Every chunk was flushed when written; this one covers a write whose flush failed after it landed.
            RandomAccess.FlushToDisk(handle);
        }

        var folder = Path.GetDirectoryName(stored)!;
        var created = CreateFolders(folder, Path.Combine(Root, StoredFolder));
        try
        {
            File.Move(staged, stored, overwrite: true);
        }
        catch (FileNotFoundException) when (File.Exists(stored))
        {
            // Another completion of the same transfer moved it first.
            return Task.CompletedTask;
        }

        _gates.TryRemove(staged, out _);
        FlushFolder(folder);
        FlushFolder(Path.GetDirectoryName(staged)!);
        foreach (var parent in created)
        {
            FlushFolder(Path.GetDirectoryName(parent)!);
        }

        return Task.CompletedTask;
    }

    public Task DeleteStagedAsync(string stagingKey, CancellationToken cancellationToken = default)
    {
        var path = StagedPath(stagingKey);
        DeleteFile(path);
        _gates.TryRemove(path, out _);
        return Task.CompletedTask;
    }

    public Stream? OpenRead(string blobKey)
    {
        try
        {
            return new FileStream(StoredPath(blobKey), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 0, FileOptions.RandomAccess);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public Task DeleteAsync(string blobKey, CancellationToken cancellationToken = default)
    {
        DeleteFile(StoredPath(blobKey));
        return Task.CompletedTask;
    }

    public IEnumerable<string> ListStaged()
    {
        var staging = Path.Combine(Root, StagingFolder);
        if (!Directory.Exists(staging))
        {
            yield break;
        }

        foreach (var file in Directory.EnumerateFiles(staging, "*" + PartSuffix, SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(staging, file[..^PartSuffix.Length]);
            yield return KeyOf(relative);
        }
    }

    /// <summary>The staging key of a device's transfer (also its stored blob's key).</summary>
    public static string KeyFor(string deviceId, string transferId) => deviceId + "/" + transferId;

    private string StagedPath(string key) => Path.Combine(Root, StagingFolder, RelativePath(key)) + PartSuffix;

    private string StoredPath(string key) => Path.Combine(Root, StoredFolder, RelativePath(key));

    /// <summary>
    /// The key as a relative path: each segment kept as it is, except that a leading '.' becomes <c>%2E</c> ('%' is no
    /// identifier character, so the mapping is one to one) — a device's "." or ".." never names a folder above.
    /// </summary>
    private static string RelativePath(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        var segments = key.Split('/');
        for (var i = 0; i < segments.Length; i++)
        {
            if (!EnrollIdentifiers.IsValid(segments[i]))
            {
                throw new ArgumentException($"the blob key '{key}' is not made of identifier segments separated by '/'", nameof(key));
            }

            if (segments[i][0] == '.')
            {
                segments[i] = "%2E" + segments[i][1..];
            }
        }

        return Path.Combine(segments);
    }

    private static string KeyOf(string relativePath) =>
        string.Join('/', relativePath.Split(Path.DirectorySeparatorChar).Select(s => s.StartsWith("%2E", StringComparison.Ordinal) ? "." + s[3..] : s));

    private SafeFileHandle CreateStaged(string path)
    {
        var folder = Path.GetDirectoryName(path)!;
        var created = CreateFolders(folder, Path.Combine(Root, StagingFolder));
        var create = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.Write, Share = FileShare.ReadWrite | FileShare.Delete };
        if (OwnerOnlyFiles.Supported)
        {
            create.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (new FileStream(path, create))
        {
        }

        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);

        // The new name must survive a power loss as well as the bytes written under it.
        FlushFolder(folder);
        foreach (var parent in created)
        {
            FlushFolder(Path.GetDirectoryName(parent)!);
        }

        return handle;
    }

    /// <summary>Creates <paramref name="folder"/> and its missing parents below <paramref name="stop"/>; the ones it created.</summary>
    private static List<string> CreateFolders(string folder, string stop)
    {
        var missing = new List<string>();
        for (var current = folder; !Directory.Exists(current) && current.Length > stop.Length; current = Path.GetDirectoryName(current)!)
        {
            missing.Add(current);
        }

        OwnerOnlyFiles.EnsureDirectory(folder);
        return missing;
    }

    private static void FlushFolder(string folder)
    {
        if (OperatingSystem.IsWindows())
        {
            // NTFS makes renames durable with the file's metadata; a folder cannot be opened for flushing there.
            return;
        }

        // .NET opens no folder as a file, so POSIX open(O_RDONLY | O_DIRECTORY) + fsync it is.
        var path = System.Text.Encoding.UTF8.GetBytes(folder + "\0");
        var fd = NativeMethods.Open(path, NativeMethods.ReadOnlyDirectory);
        if (fd < 0)
        {
            throw new IOException($"could not open the folder '{folder}' to flush it (errno {Marshal.GetLastPInvokeError()})");
        }

        try
        {
            if (NativeMethods.Fsync(fd) != 0)
            {
                throw new IOException($"could not flush the folder '{folder}' to the disk (errno {Marshal.GetLastPInvokeError()})");
            }
        }
        finally
        {
            _ = NativeMethods.Close(fd);
        }
    }

    private static void DeleteFile(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    /// <summary>
    /// One staged file's flushes: a chunk whose write finished waits for a flush that started after it. A flush under way
    /// when a write finishes may not cover it, so that writer waits for the next one, which then covers every write
    /// finished meanwhile — with N chunks in flight, about two flushes instead of N. (fsync flushes the file, whichever
    /// handle it is called on.)
    /// </summary>
    private sealed class FlushGate
    {
        private readonly Lock _lock = new();
        private long _written;
        private long _flushed;
        private TaskCompletionSource? _running;

        public async Task FlushAsync(SafeFileHandle handle, FolderBlobStore store)
        {
            long mine;
            lock (_lock)
            {
                mine = ++_written;
            }

            while (true)
            {
                TaskCompletionSource? other;
                TaskCompletionSource? started = null;
                long target = 0;
                lock (_lock)
                {
                    if (_flushed >= mine)
                    {
                        return;
                    }

                    other = _running;
                    if (other is null)
                    {
                        started = _running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                        target = _written;
                    }
                }

                if (started is null)
                {
                    await other!.Task.ConfigureAwait(false);
                    continue;
                }

                try
                {
                    RandomAccess.FlushToDisk(handle);
                }
                catch (Exception ex)
                {
                    lock (_lock)
                    {
                        _running = null;
                    }

                    started.SetException(ex);
                    throw;
                }

                Interlocked.Increment(ref store._flushes);
                lock (_lock)
                {
                    _flushed = Math.Max(_flushed, target);
                    _running = null;
                }

                started.SetResult();
                return;
            }
        }
    }
}
