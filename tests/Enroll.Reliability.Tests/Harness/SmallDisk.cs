using Enroll.Testing;

namespace Enroll.Reliability.Tests.Harness;

/// <summary>
/// A small tmpfs mounted on a temporary folder, so a test can fill the disk under a device's state folder and free it
/// again; unmounted when disposed. Mounting needs root: the test says so instead of passing or hanging.
/// </summary>
internal sealed class SmallDisk : IAsyncDisposable
{
    private readonly TempDirectory _mountPoint = new("enroll-smalldisk");

    private SmallDisk()
    {
    }

    public string Path => _mountPoint.Path;

    private string Filler => System.IO.Path.Combine(Path, "filler");

    public static async Task<SmallDisk> MountAsync(string size)
    {
        Assert.True(Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root" || await IsRootAsync(), "the disk-full fault mounts a small tmpfs and needs root (run the tests as root, as .ci/run does in its container)");
        var disk = new SmallDisk();
        var mounted = await ExternalTools.RunAsync("/bin/mount", ["-t", "tmpfs", "-o", $"size={size},mode=0700", "tmpfs", disk.Path], TimeSpan.FromSeconds(10));
        Assert.True(mounted.ExitCode == 0, $"cannot mount a tmpfs for the disk-full fault: {mounted}");
        return disk;
    }

    private static async Task<bool> IsRootAsync() => (await ExternalTools.RunAsync("/usr/bin/id", ["-u"], TimeSpan.FromSeconds(5))).StandardOutput.Trim() == "0";

    /// <summary>Writes a file until the disk has no space left.</summary>
    public async Task FillAsync()
    {
        var chunk = new byte[64 * 1024];
        await using var file = new FileStream(Filler, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        try
        {
            while (true)
            {
                await file.WriteAsync(chunk);
                await file.FlushAsync();
            }
        }
        catch (IOException)
        {
            // No space left on device: full. Top up the last bytes one at a time.
        }

        try
        {
            while (true)
            {
                await file.WriteAsync(chunk.AsMemory(0, 512));
                await file.FlushAsync();
            }
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Deletes the filler: space returns.</summary>
    public void Free() => File.Delete(Filler);

    public async ValueTask DisposeAsync()
    {
        await ExternalTools.RunAsync("/bin/umount", ["-l", Path], TimeSpan.FromSeconds(10));
        _mountPoint.Dispose();
    }
}
