namespace Enroll.Agent.Tests.Emulation;

/// <summary>
/// qemu's user-mode emulator for one architecture, called explicitly (<c>qemu-aarch64-static PROGRAM ARGS</c>): binfmt_misc
/// need not be registered, which a container often cannot do. The target's own loader and libraries come from Debian's
/// multiarch packages (libc6:arm64, ...), where the emulator looks for them by default.
/// </summary>
internal sealed record Emulator(string Program, string RuntimeIdentifier, string Architecture, int ElfMachine, string Loader, string LibraryFolder)
{
    public static readonly Emulator Arm64 = new("qemu-aarch64-static", "linux-arm64", "arm64", 183, "/lib/ld-linux-aarch64.so.1", "/usr/lib/aarch64-linux-gnu");

    public static readonly Emulator Arm32 = new("qemu-arm-static", "linux-arm", "armhf", 40, "/lib/ld-linux-armhf.so.3", "/usr/lib/arm-linux-gnueabihf");

    /// <summary>The emulator's path, or null when qemu-user-static is not installed.</summary>
    public string? Find() =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':').Append("/usr/bin")
            .Select(folder => Path.Combine(folder, Program))
            .FirstOrDefault(File.Exists);

    /// <summary>The emulator's path; fails with what to install when it or the target's libraries are missing.</summary>
    public string Require()
    {
        var program = Find() ?? throw new InvalidOperationException($"{Program} is not installed: sudo apt-get install -y qemu-user-static (scripts/test.sh does this)");
        foreach (var file in new[] { Loader, Path.Combine(LibraryFolder, "libstdc++.so.6"), Path.Combine(LibraryFolder, "libssl.so.3") })
        {
            if (!File.Exists(file))
            {
                throw new InvalidOperationException(
                    $"{file} is missing: the {Architecture} agent needs {Architecture} libraries. Install them with: sudo dpkg --add-architecture {Architecture} && sudo apt-get update && sudo apt-get install -y libc6:{Architecture} libstdc++6:{Architecture} libssl3:{Architecture} (scripts/test.sh does this for arm64, scripts/test-arm-emulated.sh for armhf)");
            }
        }

        return program;
    }
}
