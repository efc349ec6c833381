using System.Runtime.Versioning;
using Enroll.Shared.Files;

namespace Enroll.Shared.Tests.Files;

// The modes checked here are Unix permissions; Enroll runs and is tested on Linux.
[UnsupportedOSPlatform("windows")]
public sealed class FolderLockTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Acquire_WhileHeld_ThrowsNamingThisProcessAndItsPurpose()
    {
        var folder = _temp.Combine("state");
        using var held = FolderLock.Acquire(folder, "agent", "enroll run");

        var locked = Assert.Throws<FolderLockedException>(() => FolderLock.Acquire(folder, "agent", "second"));

        Assert.Equal(held.Folder, locked.Folder);
        Assert.Equal(new FolderOwner(Environment.ProcessId, "enroll run"), locked.Owner);
        Assert.Contains($"in use by process {Environment.ProcessId} (enroll run)", locked.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Acquire_AfterDispose_Succeeds_AndTheOwnerFileIsGone()
    {
        var folder = _temp.Combine("state");
        var first = FolderLock.Acquire(folder, "agent", "first");
        var ownerFile = Path.Combine(first.Folder, "agent.owner");
        Assert.Equal($"{Environment.ProcessId} first\n", File.ReadAllText(ownerFile));

        first.Dispose();
        Assert.False(File.Exists(ownerFile));

        using var second = FolderLock.Acquire(folder, "agent", "second");
        Assert.Equal($"{Environment.ProcessId} second\n", File.ReadAllText(ownerFile));
    }

    [Fact]
    public void Acquire_LocksOfOtherNamesOnTheSameFolder_DoNotConflict()
    {
        var folder = _temp.Combine("state");
        using var agent = FolderLock.Acquire(folder, "agent", "agent");
        using var server = FolderLock.Acquire(folder, "server", "server");

        Assert.Equal(agent.Folder, server.Folder);
    }

    [Fact]
    public void Acquire_MissingFolder_IsCreatedOwnerOnlyWithAnOwnerOnlyLockFile()
    {
        var folder = _temp.Combine("new");
        using var held = FolderLock.Acquire(folder, "agent", "test");

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(folder, "agent.lock")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(folder, "agent.owner")));
    }
}
