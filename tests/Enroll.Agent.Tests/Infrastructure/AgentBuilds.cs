using System.Collections.Concurrent;
using System.Diagnostics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>
/// The agent published by the repository's own script (<c>scripts/publish-agent.sh</c>), once per runtime per test run,
/// into a temporary folder deleted when the run ends.
/// </summary>
internal static class AgentBuilds
{
    /// <summary>Publishing compiles the agent (Native AOT for x64 and arm64): 4-5 minutes on a quiet machine, 11-23 on a busy one, never forever.</summary>
    public static readonly TimeSpan PublishTimeout = TimeSpan.FromMinutes(30);

    private static readonly ConcurrentDictionary<string, Lazy<Task<string>>> Published = new();

    /// <summary>The folder that holds the published <c>enroll-agent</c> for <paramref name="rid"/>.</summary>
    public static Task<string> PublishAsync(string rid, ITestOutputHelper output) =>
        Published.GetOrAdd(rid, r => new Lazy<Task<string>>(() => RunPublishAsync(r, output))).Value;

    private static async Task<string> RunPublishAsync(string rid, ITestOutputHelper output)
    {
        var folder = new TempDirectory($"enroll-agent-{rid}");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => folder.Dispose();
        var clock = Stopwatch.StartNew();
        var result = await ExternalTools.RunAsync("bash", [Repository.Combine("scripts", "publish-agent.sh"), "--rid", rid, "--out", folder.Path], PublishTimeout, workingDirectory: Repository.Root);
        output.WriteLine($"scripts/publish-agent.sh --rid {rid}: {clock.Elapsed.TotalSeconds:0} s, exit {result.ExitCode}\n{result.StandardError}");
        Assert.True(result.ExitCode == 0, $"scripts/publish-agent.sh --rid {rid} failed: {result}");
        Assert.True(File.Exists(folder.Combine("enroll-agent")), $"scripts/publish-agent.sh --rid {rid} made no enroll-agent");
        return folder.Path;
    }
}
