using System.Collections.Concurrent;
using System.Diagnostics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>
/// The agent's Debian package as <c>scripts/build-deb.sh</c> builds it (publishing the agent through
/// <c>scripts/publish-agent.sh</c>), once per architecture per test run.
/// </summary>
internal static class DebianPackages
{
    private static readonly ConcurrentDictionary<string, Lazy<Task<string>>> Built = new();

    /// <summary>The path of the built <c>.deb</c>.</summary>
    public static Task<string> BuildAsync(string architecture, ITestOutputHelper output) =>
        Built.GetOrAdd(architecture, a => new Lazy<Task<string>>(() => RunBuildAsync(a, output))).Value;

    private static async Task<string> RunBuildAsync(string architecture, ITestOutputHelper output)
    {
        var folder = new TempDirectory($"enroll-deb-{architecture}");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => folder.Dispose();
        var clock = Stopwatch.StartNew();
        var result = await ExternalTools.RunAsync("bash", [Repository.Combine("scripts", "build-deb.sh"), "--arch", architecture, "--out", folder.Path], AgentBuilds.PublishTimeout, workingDirectory: Repository.Root);
        output.WriteLine($"scripts/build-deb.sh --arch {architecture}: {clock.Elapsed.TotalSeconds:0} s, exit {result.ExitCode}\n{result.StandardError}");
        Assert.True(result.ExitCode == 0, $"scripts/build-deb.sh --arch {architecture} failed: {result}");
        var deb = result.StandardOutput.TrimEnd().Split('\n')[^1];
        Assert.True(File.Exists(deb), $"scripts/build-deb.sh printed '{deb}', which does not exist");
        return deb;
    }

    /// <summary>Runs <c>dpkg-deb</c> with <paramref name="args"/>; fails the test when it fails.</summary>
    public static async Task<string> DpkgDebAsync(params string[] args)
    {
        var result = await ExternalTools.RunAsync("dpkg-deb", args, TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, $"dpkg-deb {string.Join(' ', args)}: {result}");
        return result.StandardOutput;
    }
}
