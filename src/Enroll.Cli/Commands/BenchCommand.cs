using System.CommandLine;
using Enroll.Cli.Bench;
using Enroll.Cli.Infrastructure;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll bench ...</c>: measure a deployment against the targets of SPEC §7.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Benchmarks: each prints medians of several runs and the ratios against the targets (exit 0 either way)");
        command.Subcommands.Add(Outbox());
        command.Subcommands.Add(Ingest());
        return command;
    }

    private static Option<string> DirectoryOption() => new("--dir")
    {
        Description = "Scratch folder on the disk under test (files are removed afterwards)",
        DefaultValueFactory = _ => Path.GetTempPath(),
    };

    private static Option<int> RunsOption() => new("--runs") { Description = "Runs per measurement; the report shows medians", DefaultValueFactory = _ => 3 };

    private static Option<int> WindowOption() => new("--window")
    {
        Description = "QoS 1 publishes in flight at once, for the outbox publisher and the raw loop alike",
        DefaultValueFactory = _ => 64,
    };

    private static Command Outbox()
    {
        var directory = DirectoryOption();
        var duration = CliOptions.Duration("--duration", "How long each SQLite and send measurement runs", "5s");
        var runs = RunsOption();
        var drain = new Option<int>("--drain-messages") { Description = "Messages for the drain and raw publish measurements", DefaultValueFactory = _ => 20_000 };
        var window = WindowOption();
        var json = CliOptions.Json();
        var command = new Command("outbox", "Outbox sends vs raw SQLite on the same disk, and outbox drain vs a raw QoS 1 publish loop on the embedded broker") { directory, duration, runs, drain, window, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var report = await OutboxBench.RunOutboxAsync(parse.GetValue(directory)!, parse.GetDuration(duration), Math.Max(1, parse.GetValue(runs)), parse.GetValue(drain), Math.Max(1, parse.GetValue(window)), line => output.Error.WriteLine(line));
            report.Print(output, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Ingest()
    {
        var directory = DirectoryOption();
        var runs = RunsOption();
        var count = new Option<int>("--messages") { Description = "Messages per measurement", DefaultValueFactory = _ => 20_000 };
        var window = WindowOption();
        var json = CliOptions.Json();
        var command = new Command("ingest", "Server ingest (stored and acknowledged) vs a raw QoS 1 publish loop on the embedded broker") { directory, runs, count, window, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var report = await OutboxBench.RunIngestAsync(parse.GetValue(directory)!, parse.GetValue(count), Math.Max(1, parse.GetValue(runs)), Math.Max(1, parse.GetValue(window)), line => output.Error.WriteLine(line));
            report.Print(output, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }
}
