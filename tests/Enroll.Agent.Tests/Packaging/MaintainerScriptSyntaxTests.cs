using Enroll.Agent.Tests.Infrastructure;
using Enroll.Testing;

namespace Enroll.Agent.Tests.Packaging;

/// <summary>The maintainer scripts and the packaging scripts parse as what they claim to be, and shellcheck finds nothing.</summary>
public sealed class MaintainerScriptSyntaxTests
{
    public static TheoryData<string, string> Scripts() => new()
    {
        { "deploy/debian/postinst", "sh" },
        { "deploy/debian/prerm", "sh" },
        { "deploy/debian/postrm", "sh" },
        { "scripts/build-deb.sh", "bash" },
        { "scripts/test.sh", "bash" },
        { "scripts/test-arm-emulated.sh", "bash" },
    };

    [Theory]
    [MemberData(nameof(Scripts))]
    public async Task Script_ParsesAndPassesShellcheck(string script, string shell)
    {
        var path = Repository.Combine(script.Split('/'));
        Assert.True(File.Exists(path), $"{script} is missing");
        Assert.True((File.GetUnixFileMode(path) & UnixFileMode.UserExecute) != 0, $"{script} is not executable");
        Assert.StartsWith(shell == "sh" ? "#!/bin/sh\n" : "#!/usr/bin/env bash\n", await File.ReadAllTextAsync(path), StringComparison.Ordinal);

        var parsed = await ExternalTools.RunAsync(shell, ["-n", path], TimeSpan.FromSeconds(30));
        Assert.True(parsed.ExitCode == 0, $"{shell} -n {script}: {parsed}");

        var shellcheck = ExternalTools.Require("shellcheck", "shellcheck");
        var checkedScript = await ExternalTools.RunAsync(shellcheck, ["--shell", shell, "--severity", "style", path], TimeSpan.FromSeconds(60), workingDirectory: Repository.Root);
        Assert.True(checkedScript.ExitCode == 0, $"shellcheck {script}: {checkedScript}");
    }
}
