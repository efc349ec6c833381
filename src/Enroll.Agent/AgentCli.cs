using System.Collections;
using System.CommandLine;
using Enroll.Cli.Commands;
using Enroll.Cli.Infrastructure;

namespace Enroll.Agent;

/// <summary>
/// The <c>enroll-agent</c> command tree: the device commands of <c>enroll device ...</c> at its root
/// (<c>enroll-agent run</c>, <c>enroll-agent register</c>, <c>enroll-agent send</c>, ...), nothing of the server, with
/// their flags' defaults from <see cref="AgentConfiguration"/>.
/// </summary>
internal static class AgentCli
{
    public const string ProgramName = "enroll-agent";

    public static RootCommand Build(AgentConfiguration? configuration = null)
    {
        var root = new RootCommand("enroll-agent: the Enroll device agent. Registers this device, keeps its tokens fresh, delivers its outbox, keeps its twin in step and runs its commands. Settings come from the configuration file, then ENROLL_AGENT_* environment variables, then flags (docs/device.md)");
        root.Options.Add(CliOptions.Verbose());
        root.Options.Add(new Option<string?>(AgentConfiguration.ConfigFlag)
        {
            Description = $"The configuration file (default: {AgentConfiguration.ConfigVariable}, else {AgentConfiguration.DefaultPath} when it exists)",
            Recursive = true,
        });
        DeviceCommand.AddTo(root);
        configuration?.ApplyTo(root);
        return root;
    }

    /// <summary>Runs <paramref name="args"/> with the settings of the configuration file and <paramref name="environment"/> (default: this process's).</summary>
    public static Task<int> RunAsync(IReadOnlyList<string> args, InvocationConfiguration? invocation = null, IDictionary? environment = null, string defaultConfigPath = AgentConfiguration.DefaultPath)
    {
        Failures.Program = ProgramName;
        DeviceCommand.Prefix = ProgramName;
        AgentConfiguration configuration;
        try
        {
            configuration = AgentConfiguration.Load(args, environment ?? Environment.GetEnvironmentVariables(), defaultConfigPath);
        }
        catch (CliUsageException ex)
        {
            return Task.FromResult(Failures.Report(invocation?.Error ?? Console.Error, ex, verbose: false));
        }

        return CommandRunner.RunAsync(Build(configuration), args, invocation);
    }
}
