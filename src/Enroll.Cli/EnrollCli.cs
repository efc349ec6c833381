using System.CommandLine;
using Enroll.Cli.Commands;

namespace Enroll.Cli;

/// <summary>The <c>enroll</c> command tree.</summary>
internal static class EnrollCli
{
    public static RootCommand Build()
    {
        var root = new RootCommand("enroll: onboard IoT devices over MQTT and carry their data home");
        root.Subcommands.Add(ServerCommand.Create());
        root.Subcommands.Add(TokensCommand.Create());
        root.Subcommands.Add(OpsCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(DeviceCommand.Create());
        root.Subcommands.Add(KeysCommand.Create());
        root.Subcommands.Add(MessagesCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        return root;
    }
}
