using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;

namespace Enroll.Cli.Infrastructure;

/// <summary>How a command tree is run, for <c>enroll</c> and the device agent <c>enroll-agent</c> alike: the CLI contract of <c>docs/cli.md</c>.</summary>
internal static class CommandRunner
{
    /// <summary>How long a signalled command may take to stop cleanly; below the systemd units' TimeoutStopSec of 30 s.</summary>
    public static readonly TimeSpan GracefulStop = TimeSpan.FromSeconds(25);

    /// <summary>
    /// Parses <paramref name="args"/> and runs the command. Response files are off (<c>@FILE</c> is an option's value, as
    /// in <c>--data @FILE</c>). A usage error is one line and exit code 2, without the help text; any other failure is one
    /// line from <see cref="Failures"/> (and the full exception with <c>--verbose</c>).
    /// </summary>
    public static async Task<int> RunAsync(RootCommand root, IReadOnlyList<string> args, InvocationConfiguration? configuration = null)
    {
        configuration ??= new InvocationConfiguration();
        configuration.EnableDefaultExceptionHandler = false;

        // On SIGINT or SIGTERM the command's token is cancelled and the process waits this long for it to stop cleanly
        // (the agent stops its loops and says STOPPING=1, the server drains) before it exits with 143. The parser's own
        // default, 2 s, cut short an agent stopping on a loaded machine; the systemd units allow 30 s (TimeoutStopSec).
        configuration.ProcessTerminationTimeout = GracefulStop;
        var error = configuration.Error;
        ParseResult? parse = null;
        try
        {
            parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
            if (parse.Action is ParseErrorAction)
            {
                error.WriteLine($"{Failures.Program}: {DescribeErrors(parse)} (see {CommandPath(parse.CommandResult)} --help)");
                return ExitCodes.Usage;
            }

            return await parse.InvokeAsync(configuration);
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Interrupted;
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

    /// <summary><c>enroll device status</c> (or <c>enroll-agent status</c>) for the command <paramref name="result"/> is part of.</summary>
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

        names.Add(Failures.Program);
        names.Reverse();
        return string.Join(' ', names);
    }
}
