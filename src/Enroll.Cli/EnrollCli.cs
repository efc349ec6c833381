using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using Enroll.Cli.Commands;
using Enroll.Cli.Infrastructure;

namespace Enroll.Cli;

/// <summary>The <c>enroll</c> command tree, and how it is run: the CLI contract of <c>docs/cli.md</c>.</summary>
internal static class EnrollCli
{
    /// <summary>The exit code of a command interrupted by Ctrl+C before it finished (128 + SIGINT).</summary>
    public const int Interrupted = 130;

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

    /// <summary>
    /// Parses <paramref name="args"/> and runs the command. Response files are off (<c>@FILE</c> is an option's value, as
    /// in <c>--data @FILE</c>). A usage error is one line and exit code 2, without the help text; any other failure is one
    /// line from <see cref="Failures"/> (and the full exception with <c>--verbose</c>).
    /// </summary>
    public static async Task<int> RunAsync(IReadOnlyList<string> args, InvocationConfiguration? configuration = null)
    {
        configuration ??= new InvocationConfiguration();
        configuration.EnableDefaultExceptionHandler = false;
        var error = configuration.Error;
        ParseResult? parse = null;
        try
        {
            parse = Build().Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
            if (parse.Action is ParseErrorAction)
            {
                error.WriteLine($"enroll: {DescribeErrors(parse)} (see {CommandPath(parse.CommandResult)} --help)");
                return ExitCodes.Usage;
            }

            return await parse.InvokeAsync(configuration);
        }
        catch (OperationCanceledException)
        {
            return Interrupted;
        }
        catch (Exception ex)
        {
            return Failures.Report(error, ex, parse is not null && CliOptions.IsVerbose(parse));
        }
    }

    private static string DescribeErrors(ParseResult parse)
    {
        var messages = parse.Errors.Select(e => e.Message.TrimEnd('.')).Distinct(StringComparer.Ordinal).ToList();
        return messages.Count == 1 ? messages[0] : $"{messages[0]} (and {messages.Count - 1} more)";
    }

    /// <summary><c>enroll device status</c> for the command <paramref name="result"/> is part of.</summary>
    private static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? current = result; current is CommandResult command; current = command.Parent)
        {
            if (command.Parent is not null)
            {
                names.Add(command.Command.Name);
            }
        }

        names.Add("enroll");
        names.Reverse();
        return string.Join(' ', names);
    }
}
