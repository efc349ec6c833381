using System.Runtime.Versioning;
using Enroll.Shared.Files;

namespace Enroll.Shared.Tests.Files;

// The modes checked here are Unix permissions; Enroll runs and is tested on Linux.
[UnsupportedOSPlatform("windows")]
public sealed class OwnerOnlyFilesTests : IDisposable
{
    private const UnixFileMode Mode0600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode Mode0700 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void EnsureDirectory_Missing_CreatesItWithMode0700AndReturnsTheFullPath()
    {
        var path = _temp.Combine("a");

        var full = OwnerOnlyFiles.EnsureDirectory(path);

        Assert.Equal(Path.GetFullPath(path), full);
        Assert.Equal(Mode0700, File.GetUnixFileMode(full));
    }

    [Fact]
    public void WriteAllText_CreatesMode0600AndLeavesNoTemporaryFile()
    {
        var path = _temp.Combine("key");

        OwnerOnlyFiles.WriteAllText(path, "secret");

        Assert.Equal("secret", File.ReadAllText(path));
        Assert.Equal(Mode0600, File.GetUnixFileMode(path));
        Assert.False(File.Exists(path + ".tmp"));
        Assert.False(OwnerOnlyFiles.IsAccessibleByOthers(path));
    }

    [Fact]
    public void WriteAllText_OverAWorldReadableFile_ReplacesItWithMode0600()
    {
        var path = _temp.Combine("key");
        File.WriteAllText(path, "old");
        File.SetUnixFileMode(path, Mode0600 | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        Assert.True(OwnerOnlyFiles.IsAccessibleByOthers(path));

        OwnerOnlyFiles.WriteAllText(path, "new");

        Assert.Equal("new", File.ReadAllText(path));
        Assert.Equal(Mode0600, File.GetUnixFileMode(path));
    }

    [Fact]
    public void Touch_Missing_CreatesAnEmptyMode0600File_AndLeavesAnExistingOneAlone()
    {
        var path = _temp.Combine("db");

        OwnerOnlyFiles.Touch(path);
        Assert.Equal(0, new FileInfo(path).Length);
        Assert.Equal(Mode0600, File.GetUnixFileMode(path));

        File.WriteAllText(path, "kept");
        OwnerOnlyFiles.Touch(path);
        Assert.Equal("kept", File.ReadAllText(path));
    }
}
