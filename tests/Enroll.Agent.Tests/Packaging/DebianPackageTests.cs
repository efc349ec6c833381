using System.Text.RegularExpressions;
using Enroll.Agent.Tests.Infrastructure;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Packaging;

/// <summary>
/// The amd64 package as <c>scripts/build-deb.sh</c> builds it from the published agent: its control fields, its files
/// with their owners and modes, its conffile, its checksums and its unit, read back with <c>dpkg-deb</c>.
/// </summary>
[Collection(SerialBuilds.Name)]
public sealed partial class DebianPackageTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Amd64Package_HasTheControlFields_TheRepositoryVersion_AndTheMaintainerScripts()
    {
        var deb = await DebianPackages.BuildAsync("amd64", output);
        var info = await DebianPackages.DpkgDebAsync("--info", deb);
        output.WriteLine(info);

        // Fields apart by ";;": a Depends alternative has '|' in it.
        var fields = await DebianPackages.DpkgDebAsync("--showformat=${Package};;${Version};;${Architecture};;${Maintainer};;${Section};;${Priority};;${Installed-Size};;${Depends}", "--show", deb);
        var parts = fields.TrimEnd('\n').Split(";;");
        Assert.Equal(["enroll-agent", RepositoryVersion(), "amd64"], parts[..3]);
        Assert.Matches(@"^.+ <[^@<>\s]+@[^@<>\s]+>$", parts[3]);
        Assert.Equal(["net", "optional"], parts[4..6]);
        Assert.True(int.Parse(parts[6], System.Globalization.CultureInfo.InvariantCulture) > 1000, $"Installed-Size {parts[6]} KiB is too small for the agent");
        var depends = parts[7].Split(", ");
        Assert.Matches(@"^libc6 \(>= 2\.\d+\)$", depends[0]);
        Assert.Contains("libssl3 | libssl3t64", depends);
        Assert.Contains("Description: Enroll device agent", info, StringComparison.Ordinal);

        // The maintainer scripts are there and executable (dpkg-deb --info marks them with '*').
        foreach (var script in new[] { "postinst", "prerm", "postrm" })
        {
            Assert.Matches($@"\d+ bytes,\s+\d+ lines\s+\*\s+{script}\s+#!/bin/sh", info);
        }
    }

    [Fact]
    public async Task Amd64Package_InstallsTheAgentUnitAndConffile_OwnedByRoot_WithTheirModes_AndTrueChecksums()
    {
        var deb = await DebianPackages.BuildAsync("amd64", output);
        var listing = (await DebianPackages.DpkgDebAsync("--contents", deb)).TrimEnd().Split('\n');
        var entries = listing.Select(l => ContentsLine().Match(l)).ToList();
        Assert.All(entries.Zip(listing), e => Assert.True(e.First.Success, $"unexpected dpkg-deb --contents line: {e.Second}"));
        var byPath = entries.ToDictionary(e => e.Groups["path"].Value, e => (Mode: e.Groups["mode"].Value, Owner: e.Groups["owner"].Value, Target: e.Groups["target"].Value));

        // --root-owner-group: nothing belongs to the builder.
        Assert.All(byPath, e => Assert.Equal("root/root", e.Value.Owner));
        Assert.Equal("-rw-r--r--", byPath["./lib/systemd/system/enroll-agent.service"].Mode);
        Assert.Equal("-rw-r-----", byPath["./etc/enroll/agent.json"].Mode);
        Assert.Equal("-rw-r--r--", byPath["./usr/share/doc/enroll-agent/copyright"].Mode);

        // The agent comes with libe_sqlite3.so beside it: both in /usr/lib/enroll-agent, /usr/bin has a relative link.
        var binary = byPath["./usr/bin/enroll-agent"];
        if (binary.Mode.StartsWith('l'))
        {
            Assert.Equal("../lib/enroll-agent/enroll-agent", binary.Target);
            Assert.Equal("-rwxr-xr-x", byPath["./usr/lib/enroll-agent/enroll-agent"].Mode);
            Assert.All(byPath.Where(e => e.Key.StartsWith("./usr/lib/enroll-agent/", StringComparison.Ordinal) && e.Key.EndsWith(".so", StringComparison.Ordinal)), e => Assert.Equal("-rw-r--r--", e.Value.Mode));
        }
        else
        {
            Assert.Equal("-rwxr-xr-x", binary.Mode);
        }

        Assert.DoesNotContain(byPath.Keys, p => p.EndsWith(".pdb", StringComparison.Ordinal) || p.EndsWith(".dbg", StringComparison.Ordinal));
        Assert.DoesNotContain(byPath.Keys, p => p.StartsWith("./var/", StringComparison.Ordinal)); // the state folder is the postinst's

        using var tree = new TempDirectory("enroll-deb-tree");
        await DebianPackages.DpkgDebAsync("--extract", deb, tree.Combine("root"));
        await DebianPackages.DpkgDebAsync("--control", deb, tree.Combine("control"));
        Assert.Equal("/etc/enroll/agent.json\n", await File.ReadAllTextAsync(tree.Combine("control", "conffiles")));
        Assert.Equal(await File.ReadAllTextAsync(Repository.Combine("deploy", "agent", "agent.json")), await File.ReadAllTextAsync(tree.Combine("root", "etc", "enroll", "agent.json")));

        // md5sums names every regular file (never a conffile's folder, a link or a control file), each with its true sum.
        var sums = (await File.ReadAllLinesAsync(tree.Combine("control", "md5sums"))).Select(l => l[34..]).ToList();
        var files = byPath.Where(e => e.Value.Mode.StartsWith('-')).Select(e => e.Key[2..]).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(files, sums.Order(StringComparer.Ordinal).ToList());
        var check = await ExternalTools.RunAsync("md5sum", ["--check", "--strict", tree.Combine("control", "md5sums")], TimeSpan.FromMinutes(1), workingDirectory: tree.Combine("root"));
        Assert.True(check.ExitCode == 0, $"md5sum --check of the package's md5sums: {check}");
    }

    [Fact]
    public async Task Amd64Package_Unit_IsTheRepositorysUnit_NotifyTypeDedicatedUserOwnerOnlyStateAndHardening()
    {
        var deb = await DebianPackages.BuildAsync("amd64", output);
        using var tree = new TempDirectory("enroll-deb-unit");
        await DebianPackages.DpkgDebAsync("--extract", deb, tree.Path);
        var text = await File.ReadAllTextAsync(tree.Combine("lib", "systemd", "system", "enroll-agent.service"));

        // One copy: the package's unit is deploy/systemd/enroll-agent.service, byte for byte.
        Assert.Equal(await File.ReadAllTextAsync(Repository.Combine("deploy", "systemd", "enroll-agent.service")), text);

        var unit = new SystemdUnit(text);
        Assert.Equal("notify", unit["Service.Type"]);
        Assert.Equal("on-failure", unit["Service.Restart"]);
        Assert.Matches(@"^\d+s$", unit["Service.RestartSec"]);
        Assert.Equal("2 3", unit["Service.RestartPreventExitStatus"]);
        Assert.Equal("enroll-agent", unit["Service.User"]);
        Assert.Equal("enroll-agent", unit["Service.Group"]);
        Assert.Equal("enroll-agent", unit["Service.StateDirectory"]);
        Assert.Equal("0700", unit["Service.StateDirectoryMode"]);
        Assert.Equal("/usr/bin/enroll-agent run", unit["Service.ExecStart"]);
        Assert.Equal("multi-user.target", unit["Install.WantedBy"]);
        foreach (var (key, value) in new[]
        {
            ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"), ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"),
            ("ProtectControlGroups", "yes"), ("RestrictNamespaces", "yes"), ("LockPersonality", "yes"), ("UMask", "0077"),
        })
        {
            Assert.Equal(value, unit[$"Service.{key}"]);
        }

        // The ExecStart the unit names is in the package.
        Assert.True(File.Exists(tree.Combine("usr", "bin", "enroll-agent")), "the package has no /usr/bin/enroll-agent (or its link points nowhere)");
    }

    internal static string RepositoryVersion() =>
        VersionElement().Match(File.ReadAllText(Repository.Combine("Directory.Build.props"))).Groups[1].Value;

    [GeneratedRegex(@"^(?<mode>[-dl][rwxsStT-]{9}) (?<owner>\S+)\s+\d+ \d{4}-\d\d-\d\d \d\d:\d\d (?<path>\./\S*?)(?: -> (?<target>\S+))?$")]
    private static partial Regex ContentsLine();

    [GeneratedRegex("<Version>([^<]+)</Version>")]
    private static partial Regex VersionElement();
}
