using Enroll.Agent.Tests.Infrastructure;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Packaging;

/// <summary>
/// The package's maintainer scripts run by dpkg itself, installing into a fake root (<c>dpkg --root</c>, scripts told
/// the root through DPKG_ROOT): install, reinstall over a changed conffile and a disabled unit, remove, purge.
/// </summary>
[Collection(SerialBuilds.Name)]
public sealed class MaintainerScriptTests(ITestOutputHelper output)
{
    private const string User = "enroll-agent";

    [Fact]
    public async Task InstallReinstallRemovePurge_ManageTheUserStateFolderConffileAndUnit_OnlyPurgeForgetsTheDevice()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test installs the package into a fake root with dpkg --root and chown: run it as root (CI does)");
        var deb = await DebianPackages.BuildAsync("amd64", output);
        using var root = FakeRoot();
        string R(string path) => root.Path + path;

        // The Provisioning Token as a manufacturer writes it before the package is installed (tokenFile in agent.json).
        Directory.CreateDirectory(R("/etc/enroll"));
        await File.WriteAllTextAsync(R("/etc/enroll/provisioning-token"), "ept_factory.secret\n");

        // Install: a system user without a shell whose home is the state folder; the folder owner-only; the conffile and
        // the token file for root and the agent's group; the unit enabled.
        await DpkgAsync(root, "--install", deb);
        var passwd = Entry(R("/etc/passwd"));
        Assert.NotNull(passwd);
        Assert.Equal(["x", "Enroll device agent", "/var/lib/enroll-agent", "/usr/sbin/nologin"], [passwd[1], passwd[4], passwd[5], passwd[6]]);
        var uid = int.Parse(passwd[2], System.Globalization.CultureInfo.InvariantCulture);
        var gid = int.Parse(passwd[3], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(uid, 1, 999); // a system user
        Assert.Equal(gid.ToString(System.Globalization.CultureInfo.InvariantCulture), Entry(R("/etc/group"))?[2]);
        await AssertOwnerAndModeAsync(R("/var/lib/enroll-agent"), $"{uid}:{gid}", "700");
        await AssertOwnerAndModeAsync(R("/etc/enroll/agent.json"), $"0:{gid}", "640");
        await AssertOwnerAndModeAsync(R("/etc/enroll/provisioning-token"), $"0:{gid}", "640");
        var wants = R("/etc/systemd/system/multi-user.target.wants/enroll-agent.service");
        var systemctl = HasProgram("systemctl");
        if (systemctl)
        {
            Assert.Equal("/lib/systemd/system/enroll-agent.service", new FileInfo(wants).LinkTarget);
        }

        // The device lives: it has state; the administrator edits the configuration and disables the unit.
        await File.WriteAllTextAsync(R("/var/lib/enroll-agent/identity.json"), "{}");
        await File.WriteAllTextAsync(R("/etc/enroll/agent.json"), "{ \"edited\": true }\n");
        File.Delete(wants);

        // Reinstall (what an upgrade runs): the edited conffile and the state stay, nobody re-enables the unit, the user
        // is not made twice.
        await DpkgAsync(root, "--install", deb);
        Assert.Equal("{ \"edited\": true }\n", await File.ReadAllTextAsync(R("/etc/enroll/agent.json")));
        await AssertOwnerAndModeAsync(R("/etc/enroll/agent.json"), $"0:{gid}", "640");
        Assert.True(File.Exists(R("/var/lib/enroll-agent/identity.json")));
        Assert.False(File.Exists(wants) || new FileInfo(wants).LinkTarget is not null, "the reinstall enabled the unit the administrator had disabled");
        Assert.Single(File.ReadAllLines(R("/etc/passwd")), l => l.StartsWith(User + ":", StringComparison.Ordinal));

        // Remove: the program goes; the device's identity, its user and its configuration stay for a reinstall.
        await DpkgAsync(root, "--remove", "enroll-agent");
        Assert.False(File.Exists(R("/usr/bin/enroll-agent")) || File.Exists(R("/usr/lib/enroll-agent/enroll-agent")));
        Assert.False(File.Exists(R("/lib/systemd/system/enroll-agent.service")));
        Assert.True(File.Exists(R("/var/lib/enroll-agent/identity.json")));
        Assert.True(File.Exists(R("/etc/enroll/agent.json")));
        Assert.NotNull(Entry(R("/etc/passwd")));

        // Purge: a factory reset. State, configuration, user and group are gone; the manufacturer's token stays, so the
        // device can provision itself again when the package is installed again.
        await DpkgAsync(root, "--purge", "enroll-agent");
        Assert.False(Directory.Exists(R("/var/lib/enroll-agent")));
        Assert.Equal(["provisioning-token"], Directory.GetFileSystemEntries(R("/etc/enroll")).Select(Path.GetFileName));
        Assert.Null(Entry(R("/etc/passwd")));
        Assert.Null(Entry(R("/etc/group")));
        Assert.Null(Entry(R("/etc/shadow")));
    }

    /// <summary>A root holding only root's account lines and an empty dpkg database.</summary>
    private static TempDirectory FakeRoot()
    {
        var root = new TempDirectory("enroll-fakeroot");
        foreach (var folder in new[] { "etc", "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers" })
        {
            Directory.CreateDirectory(root.Combine(folder));
        }

        File.WriteAllText(root.Combine("var/lib/dpkg/status"), string.Empty);
        File.WriteAllText(root.Combine("var/lib/dpkg/available"), string.Empty);
        File.WriteAllText(root.Combine("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
        File.WriteAllText(root.Combine("etc/group"), "root:x:0:\n");
        File.WriteAllText(root.Combine("etc/shadow"), "root:*:19000:0:99999:7:::\n");
        File.WriteAllText(root.Combine("etc/gshadow"), "root:*::\n");
        File.SetUnixFileMode(root.Combine("etc/shadow"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        File.SetUnixFileMode(root.Combine("etc/gshadow"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        return root;
    }

    private async Task DpkgAsync(TempDirectory root, params string[] args)
    {
        // --force-depends: the fake root has no libc6 or libssl3 package; the dependency fields are checked elsewhere.
        var result = await ExternalTools.RunAsync("dpkg", ["--root=" + root.Path, "--force-script-chrootless", "--force-depends", "--log=/dev/null", .. args], TimeSpan.FromMinutes(2));
        output.WriteLine($"dpkg {string.Join(' ', args)}: {result}");
        Assert.True(result.ExitCode == 0, $"dpkg {string.Join(' ', args)}: {result}");
    }

    private static string[]? Entry(string file) =>
        File.ReadAllLines(file).Select(l => l.Split(':')).FirstOrDefault(f => f[0] == User);

    private static async Task AssertOwnerAndModeAsync(string path, string owner, string mode)
    {
        var stat = await ExternalTools.RunAsync("stat", ["-c", "%u:%g %a", path], TimeSpan.FromSeconds(10));
        Assert.Equal($"{owner} {mode}", stat.StandardOutput.Trim());
    }

    private static bool HasProgram(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':').Append("/usr/bin").Append("/bin").Any(f => File.Exists(Path.Combine(f, name)));
}
