using System.Security.Cryptography;
using Enroll.Server.Files;
using Enroll.Testing;

namespace Enroll.Server.Tests.Files;

/// <summary><see cref="FolderBlobStore"/> on real files in a temporary folder.</summary>
public sealed class FolderBlobStoreTests : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-blobs");
    private readonly FolderBlobStore _store;

    public FolderBlobStoreTests() => _store = new FolderBlobStore(_folder.Combine("files"));

    public void Dispose() => _folder.Dispose();

    private static byte[] Bytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static byte[] ReadAll(Stream? stream)
    {
        Assert.NotNull(stream);
        using (stream)
        {
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            return copy.ToArray();
        }
    }

    [Fact]
    public async Task WriteChunk_OutOfOrderAndRepeated_StagedFileIsTheWholeInOrder()
    {
        var whole = Bytes(5000, 1);

        await _store.WriteChunkAsync("dev-1/t1", 4096, whole.AsMemory(4096));
        await _store.WriteChunkAsync("dev-1/t1", 0, whole.AsMemory(0, 2048));
        await _store.WriteChunkAsync("dev-1/t1", 2048, whole.AsMemory(2048, 2048));
        await _store.WriteChunkAsync("dev-1/t1", 0, whole.AsMemory(0, 2048));

        Assert.Equal(whole, ReadAll(_store.OpenStaged("dev-1/t1")));
        Assert.True(File.Exists(_folder.Combine("files", "staging", "dev-1", "t1.part")));
    }

    [Fact]
    public async Task WriteChunk_ManyConcurrentChunks_AllLandAndShareFlushes()
    {
        const int chunk = 4096;
        const int count = 32;
        var whole = Bytes(chunk * count, 2);

        await Task.WhenAll(Enumerable.Range(0, count).Select(i => Task.Run(async () => await _store.WriteChunkAsync("dev-1/big", (long)i * chunk, whole.AsMemory(i * chunk, chunk)))));

        Assert.Equal(SHA256.HashData(whole), SHA256.HashData(ReadAll(_store.OpenStaged("dev-1/big"))));
        Assert.InRange(_store.Flushes, 1, count);
    }

    [Fact]
    public async Task Commit_MovesStagedToStored_AndAgainAfterwardsDoesNothing()
    {
        var whole = Bytes(3000, 3);
        await _store.WriteChunkAsync("dev-1/t1", 0, whole);

        await _store.CommitAsync("dev-1/t1", "dev-1/t1");
        await _store.CommitAsync("dev-1/t1", "dev-1/t1");

        Assert.Null(_store.OpenStaged("dev-1/t1"));
        Assert.Empty(_store.ListStaged());
        using var stored = _store.OpenRead("dev-1/t1");
        Assert.True(stored!.CanSeek);
        stored.Seek(1000, SeekOrigin.Begin);
        var tail = new byte[2000];
        stored.ReadExactly(tail);
        Assert.Equal(whole[1000..], tail);
    }

    [Fact]
    public async Task Commit_NeitherStagedNorStored_Throws()
    {
        var error = await Assert.ThrowsAsync<FileNotFoundException>(() => _store.CommitAsync("dev-1/none", "dev-1/none"));

        Assert.Contains("dev-1/none", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keys_DotSegments_StayInsideTheirArea()
    {
        await _store.WriteChunkAsync("../..", 0, Bytes(10, 4));
        await _store.WriteChunkAsync("dev-1/.hidden", 0, Bytes(10, 5));

        Assert.Equal(["../..", "dev-1/.hidden"], _store.ListStaged().Order(StringComparer.Ordinal));
        await _store.CommitAsync("../..", "../..");
        Assert.NotNull(_store.OpenRead("../.."));
        var everything = Directory.EnumerateFiles(_folder.Path, "*", SearchOption.AllDirectories).ToList();
        Assert.All(everything, f => Assert.StartsWith(_folder.Combine("files") + Path.DirectorySeparatorChar, f, StringComparison.Ordinal));
        Assert.Throws<ArgumentException>(() => _store.OpenRead("dev-1//x"));
    }

    [Fact]
    public async Task Delete_RemovesStagedAndStored_AndMissingOnesAreFine()
    {
        await _store.WriteChunkAsync("dev-1/a", 0, Bytes(10, 6));
        await _store.WriteChunkAsync("dev-1/b", 0, Bytes(10, 7));
        await _store.CommitAsync("dev-1/b", "dev-1/b");

        await _store.DeleteStagedAsync("dev-1/a");
        await _store.DeleteAsync("dev-1/b");
        await _store.DeleteStagedAsync("dev-9/none");
        await _store.DeleteAsync("dev-9/none");

        Assert.Null(_store.OpenStaged("dev-1/a"));
        Assert.Null(_store.OpenRead("dev-1/b"));
        Assert.Empty(_store.ListStaged());
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task FoldersAndFiles_AreOwnerOnly()
    {
        await _store.WriteChunkAsync("dev-1/a", 0, Bytes(10, 8));
        await _store.WriteChunkAsync("dev-2/b", 0, Bytes(10, 9));
        await _store.CommitAsync("dev-2/b", "dev-2/b");

        var entries = Directory.EnumerateFileSystemEntries(_folder.Combine("files"), "*", SearchOption.AllDirectories).Prepend(_folder.Combine("files")).ToList();

        Assert.Equal(8, entries.Count);
        Assert.All(entries, entry => Assert.True(
            (File.GetUnixFileMode(entry) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute)) == 0,
            $"{entry} is {File.GetUnixFileMode(entry)}"));
    }
}
