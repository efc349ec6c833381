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
        command.Subcommands.Add(Register());
        command.Subcommands.Add(Storm());
        command.Subcommands.Add(StormShard());
        command.Subcommands.Add(Outbox());
        command.Subcommands.Add(Ingest());
        command.Subcommands.Add(Commands());
        command.Subcommands.Add(Files());
        command.Subcommands.Add(Connections());
        return command;
    }

    private static Option<string> BrokerOption(string defaultValue, string description) => new("--broker")
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
    };

    private static Option<int> QosOption() => new("--qos") { Description = "MQTT QoS of requests and answers: 0 or 1", DefaultValueFactory = _ => 1 };

    private static Command Register()
    {
        var broker = BrokerOption("embedded", "'embedded' (a server in this process, on free loopback ports) or the mqtt:// address of a running server, with --server");
        var devices = new Option<int>("--devices") { Description = "Concurrent devices (and echo clients)", DefaultValueFactory = _ => 64 };
        var duration = CliOptions.Duration("--duration", "How long each phase is measured", "10s");
        var warmup = CliOptions.Duration("--warmup", "Load before each measurement that is not counted", "2s", allowZero: true);
        var qos = QosOption();
        var runs = RunsOption();
        var directory = DirectoryOption();
        var json = CliOptions.Json();
        var database = new Option<string?>("--database") { Description = "Keep the registry in this PostgreSQL database (a connection string, as enroll server --database) instead of SQLite: the embedded server's, or with --instances every instance's; its keys are sealed under ENROLL_KEY_ENCRYPTION_KEY, or a new key each run, so set it to measure twice on one database" };
        var instances = new Option<int>("--instances")
        {
            Description = "Start this many enroll server processes on the external broker given with --broker mqtt://... and the database given with --database, sharing the first one's admin key and one key-encryption key, and measure through them; one instance without --database keeps its own SQLite registry",
        };
        var command = new Command("register", "Registrations/s and p50/p99 latency against a raw MQTT request/response echo on the same broker")
        {
            broker, devices, duration, warmup, qos, runs, directory, json, database, instances,
        };
        var admin = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var settings = new RegisterBench.Settings(Math.Max(1, parse.GetValue(devices)), parse.GetDuration(duration), parse.GetDurationOrZero(warmup), Math.Clamp(parse.GetValue(qos), 0, 1), Math.Max(1, parse.GetValue(runs)));
            if (parse.GetValue(instances) > 0)
            {
                var report = await RegisterBench.RunOnInstancesAsync(
                    ExternalBroker(parse.GetValue(broker)!, "--instances"),
                    parse.GetValue(database) ?? (parse.GetValue(instances) == 1 ? null : throw new CliUsageException("--instances above 1 needs --database: the instances share one PostgreSQL registry (one instance without it keeps its own SQLite registry)")),
                    parse.GetValue(instances),
                    parse.GetValue(directory)!,
                    settings,
                    line => output.Error.WriteLine(line),
                    cancellationToken);
                report.Print(output, parse.GetValue(json));
                return ExitCodes.Ok;
            }

            await using var environment = await OpenAsync(parse, parse.GetValue(broker)!, admin, parse.GetValue(directory)!, parse.GetValue(database));
            var embedded = await RegisterBench.RunAsync(environment, settings, line => output.Error.WriteLine(line));
            embedded.Print(output, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Uri ExternalBroker(string broker, string option) =>
        Uri.TryCreate(broker, UriKind.Absolute, out var uri) && uri.Scheme is "mqtt" or "mqtts"
            ? uri
            : throw new CliUsageException($"{option} needs --broker mqtt://host:port (the external broker the instances share), not '{broker}'");

    private static Command Storm()
    {
        var broker = BrokerOption("process", "'process' (start enroll server as a separate process, to measure its memory), 'embedded' (in this process), or the mqtt:// address of a running server, with --server");
        var devices = new Option<int>("--devices") { Description = "Simulated devices, all started at once", DefaultValueFactory = _ => 10_000 };
        var jitter = new Option<string>("--jitter") { Description = "Retry backoff: full (randomised, the default of the device library) or none", DefaultValueFactory = _ => "full" };
        jitter.AcceptOnlyFromAmong("full", "none");
        var rate = new Option<double?>("--rate") { Description = "The sustained registration rate for the ideal time (default: measured first with bench register)" };
        var timeout = CliOptions.Duration("--timeout", "Devices not registered by then count as lost", "10m");
        var qos = QosOption();
        var processes = new Option<int?>("--processes")
        {
            Description = "Load-generator processes to run the devices in (default: this one alone when its open-file limit holds every device's socket and state lock, otherwise as many as needed)",
        };
        var directory = DirectoryOption();
        var json = CliOptions.Json();
        var command = new Command("storm", "Every device of a fleet starts at once: time to 50/99/100 % registered against the ideal, attempts, lost devices, server memory")
        {
            broker, devices, jitter, rate, timeout, qos, processes, directory, json,
        };
        var admin = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var settings = new StormBench.Settings(Math.Max(1, parse.GetValue(devices)), parse.GetValue(jitter) == "full", parse.GetValue(rate), parse.GetDuration(timeout), Math.Clamp(parse.GetValue(qos), 0, 1), parse.GetValue(processes) is { } p ? Math.Max(1, p) : null);
            var target = parse.GetValue(broker)!;
            var scratch = parse.GetValue(directory)!;
            // 10,000 devices need more than a default open-file limit (the server started next inherits the raised one).
            var descriptors = ConnectionsBench.FileDescriptors.Raise(StormBench.DescriptorsWanted(settings.Devices));
            ServerProcess? server = null;
            try
            {
                BenchEnvironment environment;
                if (target == "process")
                {
                    output.Error.WriteLine("Starting enroll server as a separate process...");
                    server = await ServerProcess.StartAsync(scratch, StormBench.ServerArguments(settings.Devices, descriptors), cancellationToken);
                    environment = BenchEnvironment.External(server.Mqtt, server.Http, server.AdminKey, scratch);
                }
                else
                {
                    environment = await OpenAsync(parse, target, admin, scratch);
                }

                await using (environment)
                {
                    var live = !parse.GetValue(json) && !Console.IsErrorRedirected;
                    var report = await StormBench.RunAsync(environment, settings, server, descriptors, output, live);
                    report.Print(output, parse.GetValue(json));
                }
            }
            finally
            {
                if (server is not null)
                {
                    await server.DisposeAsync();
                }
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>
    /// <c>enroll bench storm-shard</c>: one load-generator process of a storm that needs several (see
    /// <see cref="ShardedStormFleet"/>). Started by <c>bench storm</c>, which speaks its line protocol on standard input and output.
    /// </summary>
    private static Command StormShard()
    {
        var broker = new Option<string>("--broker") { Required = true, Description = "The server's mqtt:// address" };
        var token = new Option<string>("--token") { Required = true, Description = "The provisioning token the devices register with" };
        var prefix = new Option<string>("--prefix") { Required = true, Description = "The storm's client ID prefix" };
        var first = new Option<int>("--first") { Description = "The index of this shard's first device" };
        var count = new Option<int>("--count") { Required = true, Description = "Devices in this shard" };
        var jitter = new Option<string>("--jitter") { DefaultValueFactory = _ => "full", Description = "full or none" };
        jitter.AcceptOnlyFromAmong("full", "none");
        var qos = QosOption();
        var timeout = CliOptions.Duration("--timeout", "Devices not registered by then give up", "10m");
        var directory = new Option<string>("--state-dir") { Required = true, Description = "The folder the devices' state folders go in (bench storm makes it and removes it)" };
        var command = new Command("storm-shard", "One load-generator process of bench storm: started by bench storm when its devices need several processes, not run by hand")
        {
            broker, token, prefix, first, count, jitter, qos, timeout, directory,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var devices = new StormDevices(new Uri(parse.GetValue(broker)!), parse.GetValue(directory)!, parse.GetValue(token)!, parse.GetValue(prefix)!, parse.GetValue(jitter) == "full", Math.Clamp(parse.GetValue(qos), 0, 1));
            return await ShardedStormFleet.RunShardAsync(devices, parse.GetValue(first), Math.Max(1, parse.GetValue(count)), parse.GetDuration(timeout), Console.In, Console.Out, cancellationToken);
        });
        return command;
    }

    private static async Task<BenchEnvironment> OpenAsync(ParseResult parse, string broker, (Option<string> Server, Option<string?> Key, Option<string> DataDir) admin, string scratch, string? database = null)
    {
        if (broker == "embedded")
        {
            return await BenchEnvironment.EmbeddedAsync(scratch, database is null ? null : o => o.Database = database);
        }

        if (database is not null)
        {
            throw new CliUsageException("--database applies to the embedded server (--broker embedded) or to the instances --instances starts; start an external server with enroll server --database");
        }

        if (!Uri.TryCreate(broker, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "mqtts"))
        {
            throw new CliUsageException($"--broker must be 'embedded' or an mqtt:// address, not '{broker}'");
        }

        return BenchEnvironment.External(uri, parse.GetUri(admin.Server), AdminClient.ResolveKey(parse, admin), scratch);
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

    private static Command Connections()
    {
        var devices = new Option<int>("--devices") { Description = "Idle MQTT sessions opened at once (50,000 and more need a raised open-file limit)", DefaultValueFactory = _ => 10_000 };
        var mosquitto = new Option<bool>("--no-mosquitto") { Description = "Leave out the comparison with a Mosquitto on this machine" };
        var settle = CliOptions.Duration("--settle", "Idle time before each memory reading", "5s");
        var runs = new Option<int>("--runs") { Description = "Runs per measurement; the report shows medians", DefaultValueFactory = _ => 1 };
        var directory = DirectoryOption();
        var json = CliOptions.Json();
        var command = new Command("connections", "Idle device sessions: connect+subscribe storm time and the server's resident memory per session, next to Mosquitto's") { devices, mosquitto, settle, runs, directory, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var settings = new ConnectionsBench.Settings(Math.Max(1, parse.GetValue(devices)), !parse.GetValue(mosquitto), parse.GetDuration(settle), Math.Max(1, parse.GetValue(runs)));
            var report = await ConnectionsBench.RunAsync(parse.GetValue(directory)!, settings, line => output.Error.WriteLine(line), cancellationToken);
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

    private static Command Commands()
    {
        var broker = BrokerOption("embedded", "'embedded' (a server in this process, on free loopback ports) or the mqtt:// address of a running server, with --server");
        var devices = new Option<int>("--devices") { Description = "Devices connected as devices, each with one round trip outstanding", DefaultValueFactory = _ => 64 };
        var duration = CliOptions.Duration("--duration", "How long each phase is measured", "10s");
        var warmup = CliOptions.Duration("--warmup", "Load before each measurement that is not counted", "2s", allowZero: true);
        var payload = new Option<int>("--payload-bytes") { Description = "Bytes of data in each command's payload and in each result", DefaultValueFactory = _ => 100 };
        var paths = new Option<string[]>("--paths")
        {
            Description = "What to measure against the echo floor: command (HTTP POST with wait, answered by the device), report (twin/report), desired (PATCH desired until the device holds the push)",
            DefaultValueFactory = _ => CommandsBench.Paths,
            AllowMultipleArgumentsPerToken = true,
        };
        paths.AcceptOnlyFromAmong(CommandsBench.Paths);
        var runs = RunsOption();
        var directory = DirectoryOption();
        var json = CliOptions.Json();
        var command = new Command("commands", "Command round trips/s and p99, twin/report round trips and desired-patch-to-device p99, against a raw echo through the same broker at the same concurrency")
        {
            broker, devices, duration, warmup, payload, paths, runs, directory, json,
        };
        var admin = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var settings = new CommandsBench.Settings(
                Math.Max(1, parse.GetValue(devices)),
                parse.GetDuration(duration),
                parse.GetDurationOrZero(warmup),
                Math.Max(1, parse.GetValue(runs)),
                Math.Clamp(parse.GetValue(payload), 0, 60 * 1024),
                parse.GetValue(paths)!);
            await using var environment = await OpenAsync(parse, parse.GetValue(broker)!, admin, parse.GetValue(directory)!);
            var report = await CommandsBench.RunAsync(environment, settings, line => output.Error.WriteLine(line));
            report.Print(output, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Files()
    {
        var size = new Option<string>("--size") { Description = "Size of the generated random file (bytes, or with KiB, MiB, GiB)", DefaultValueFactory = _ => "200MiB" };
        var chunk = new Option<int>("--chunk-bytes") { Description = "Chunk size of the device (EnrollDeviceOptions.ChunkBytes) and of the raw loop", DefaultValueFactory = _ => Enroll.Protocol.Transfers.TransferLimits.DefaultChunkBytes };
        var window = new Option<int>("--window")
        {
            Description = "QoS 1 publishes in flight at once, for the device's publisher and the raw loop alike (default: EnrollDeviceOptions.PublishWindow)",
            DefaultValueFactory = _ => new Enroll.Device.EnrollDeviceOptions().PublishWindow,
        };
        var runs = RunsOption();
        var directory = DirectoryOption();
        var json = CliOptions.Json();
        var command = new Command("files", "File upload throughput (SendFileAsync until the server has it stored) against a raw QoS 1 publish loop of the same chunks on the same broker, with the server's and the device's peak memory")
        {
            size, chunk, window, runs, directory, json,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var chunkBytes = parse.GetValue(chunk);
            if (chunkBytes < Enroll.Protocol.Transfers.TransferLimits.MinChunkBytes)
            {
                throw new CliUsageException($"--chunk-bytes must be at least {Enroll.Protocol.Transfers.TransferLimits.MinChunkBytes}");
            }

            var settings = new FilesBench.Settings(FilesBench.ParseSize(parse.GetValue(size)!), chunkBytes, Math.Max(1, parse.GetValue(window)), Math.Max(1, parse.GetValue(runs)));
            var report = await FilesBench.RunAsync(parse.GetValue(directory)!, settings, line => output.Error.WriteLine(line), cancellationToken);
            report.Print(output, parse.GetValue(json));
            return ExitCodes.Ok;
        });
        return command;
    }
}
