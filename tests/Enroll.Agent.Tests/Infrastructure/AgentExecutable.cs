using System.Text.Json.Nodes;
using Enroll.Testing;

namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>
/// A published <c>enroll-agent</c>, run directly or through an emulator (<c>qemu-aarch64-static PATH ...</c>: no binfmt
/// registration needed). Every run gets <c>ENROLL_AGENT_CONFIG</c> pointing at <paramref name="Config"/>, the test's
/// configuration file, so a machine with the package installed never lends its /etc/enroll/agent.json to a test.
/// </summary>
internal sealed record AgentExecutable(string Path, string Config, string? Emulator = null)
{
    public string FileName => Emulator ?? Path;

    public IEnumerable<string> Arguments(IEnumerable<string> args) => Emulator is null ? args : [Path, .. args];

    public Dictionary<string, string> Environment() => new()
    {
        ["ENROLL_AGENT_CONFIG"] = Config,
    };

    /// <summary>Runs one command to its end (killed after <paramref name="timeout"/>).</summary>
    public Task<ProcessResult> RunAsync(TimeSpan timeout, params string[] args) =>
        ExternalTools.RunAsync(FileName, Arguments(args), timeout, environment: Environment());

    /// <summary>Writes the agent's configuration file (the keys of /etc/enroll/agent.json) for this test.</summary>
    public static async Task<string> WriteConfigAsync(string path, JsonObject settings)
    {
        await File.WriteAllTextAsync(path, settings.ToJsonString());
        return path;
    }
}
