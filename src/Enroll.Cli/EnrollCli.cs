using System.CommandLine;
using Enroll.Cli.Commands;
using Enroll.Cli.Infrastructure;

namespace Enroll.Cli;

/// <summary>The <c>enroll</c> command tree, and how it is run: the CLI contract of <c>docs/cli.md</c>.</summary>
internal static class EnrollCli
{
    /// <summary>The exit code of a command interrupted by Ctrl+C before it finished (128 + SIGINT).</summary>
    public const int Interrupted = ExitCodes.Interrupted;

    public static RootCommand Build()
    {
        var root = new RootCommand("enroll: onboard IoT devices over MQTT and carry their data home");
        root.Options.Add(CliOptions.Verbose());
        root.Subcommands.Add(ServerCommand.Create());
        root.Subcommands.Add(TokensCommand.Create());
        root.Subcommands.Add(OpsCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(CommandsCommand.Create());
        root.Subcommands.Add(DeviceCommand.Create());
        root.Subcommands.Add(KeysCommand.Create());
        root.Subcommands.Add(MessagesCommand.Create());
        root.Subcommands.Add(FilesCommand.Create());
        root.Subcommands.Add(TwinCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(OperatorsCommand.Create());
        root.Subcommands.Add(OperatorsCommand.Audit());
        root.Subcommands.Add(OverviewCommand.Create());
        return root;
    }

    /// <summary>Parses <paramref name="args"/> and runs the command: <see cref="CommandRunner.RunAsync"/> on the whole tree.</summary>
    public static Task<int> RunAsync(IReadOnlyList<string> args, InvocationConfiguration? configuration = null) =>
        CommandRunner.RunAsync(Build(), args, configuration);
}
