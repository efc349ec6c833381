using System.Diagnostics;
using System.Globalization;
using Enroll.Cli.Infrastructure;
using Enroll.Shared.Files;
using Spectre.Console;

namespace Enroll.Cli.Bench;

/// <summary>
/// <c>enroll bench storm</c> (SPEC §7): thousands of devices, each a real device library instance with its own MQTT
/// client and state, all start at once against one server, as after a power cut. Measures how long until 50, 99 and
/// 100 % are registered against the ideal (a connect and subscribe storm of as many plain MQTT clients on the same server,
/// measured just before, plus devices ÷ sustained registration rate), attempts per device, devices lost, and the
/// server's peak memory when it runs as a separate process.
/// </summary>
internal sealed class StormBench
{
    /// <summary>The longest the connect and subscribe storm may take before it counts as not completed.</summary>
    private static readonly TimeSpan MaxConnectStorm = TimeSpan.FromMinutes(5);

    private readonly BenchEnvironment _environment;
    private readonly Settings _settings;

    private StormBench(BenchEnvironment environment, Settings settings)
    {
        _environment = environment;
        _settings = settings;
    }

    /// <summary>What a storm is: its devices, their retry jitter, the rate for the ideal (null: measured), how long devices may take, QoS, and the load-generator processes the devices run in (null: this one alone when its open-file limit allows, otherwise as many as needed).</summary>
    public sealed record Settings(int Devices, bool Jitter, double? Rate, TimeSpan Timeout, int QualityOfService, int? Processes = null);

    /// <summary>
    /// The arguments of the storm's server: its default connection cap (<see cref="DescriptorLimit.ConnectionCap"/>) is raised where
    /// it would be below the storm's devices and the bench's own connections, so that no device takes the place of
    /// another one waiting to register.
    /// </summary>
    public static string[] ServerArguments(int devices, long openFileLimit)
    {
        var needed = devices + 1024L;
        return needed <= DescriptorLimit.ConnectionCap(openFileLimit, inUse: null)
            ? []
            : ["--max-connections", Math.Min(needed, int.MaxValue).ToString(CultureInfo.InvariantCulture)];
    }

    /// <summary>Open files a process keeps for itself besides its devices' (assemblies, logs, the bench's own connections).</summary>
    private const int ProcessReserve = 4096;

    /// <summary>
    /// The open-file limit a load generator asks for to run <paramref name="devices"/> devices: each holds its socket,
    /// its state folder's lock and its outbox files open, and a server in the same process (or started next, which
    /// inherits the limit) the other end of each socket.
    /// </summary>
    public static long DescriptorsWanted(int devices) => (devices * 6L) + ProcessReserve;

    /// <summary>Devices one process can hold: each keeps a socket and its state lock open, with room for the rest.</summary>
    public static int DevicesPerProcess(long openFileLimit) => (int)Math.Clamp((openFileLimit - ProcessReserve) / 3, 1, int.MaxValue);

    /// <summary>Runs the storm; <paramref name="openFileLimit"/> is this process's limit, raised by the caller (<see cref="DescriptorsWanted"/>).</summary>
    public static async Task<BenchReport> RunAsync(BenchEnvironment environment, Settings settings, ServerProcess? server, long openFileLimit, Output output, bool live)
    {
        var storm = new StormBench(environment, settings);
        return await storm.RunAsync(server, openFileLimit, output, live);
    }

    private async Task<BenchReport> RunAsync(ServerProcess? server, long openFileLimit, Output output, bool live)
    {
        var rate = _settings.Rate;
        if (rate is null)
        {
            output.Error.WriteLine("Measuring the sustained registration rate first (enroll bench register, 64 devices, 5 s)...");
            rate = await RegisterBench.MeasureRateAsync(_environment, 64, TimeSpan.FromSeconds(5), _settings.QualityOfService);
            output.Error.WriteLine($"Sustained rate: {rate:N0} registrations/s");
        }

        // The other part of the ideal, on the same server just before the storm: what connecting and subscribing alone
        // takes for this many clients at once.
        var connectTimeout = _settings.Timeout < MaxConnectStorm ? _settings.Timeout : MaxConnectStorm;
        output.Error.WriteLine($"Measuring a connect and subscribe storm of {_settings.Devices:N0} plain MQTT clients (bounded at {connectTimeout.TotalSeconds:0} s)...");
        var connect = await ConnectStorm.RunAsync(_environment.Mqtt, _settings.Devices, _settings.QualityOfService, connectTimeout, $"plain-{Guid.NewGuid():N}"[..12]);
        output.Error.WriteLine(connect.Failed == 0
            ? $"Connect and subscribe storm: {connect.Seconds:0.00} s"
            : $"Connect and subscribe storm: {connect.Failed:N0} of {_settings.Devices:N0} clients did not get in{(connect.TimedOut ? " before the timeout" : "")} (last: {connect.LastFailure})");

        var token = await _environment.CreateTokenAsync();
        using var states = StormStateRoot.Create(_environment.Scratch);
        var fleetOf = new StormDevices(_environment.Mqtt, states.Path, token, $"storm-{Guid.NewGuid():N}"[..12], _settings.Jitter, _settings.QualityOfService);
        var processes = _settings.Processes ?? (int)Math.Ceiling(_settings.Devices / (double)DevicesPerProcess(openFileLimit));
        output.Error.WriteLine(processes <= 1
            ? $"Preparing {_settings.Devices:N0} devices (jitter {(_settings.Jitter ? "full" : "none")})..."
            : $"Preparing {_settings.Devices:N0} devices (jitter {(_settings.Jitter ? "full" : "none")}) in {processes} load-generator processes (this one's open-file limit does not hold them all)...");
        if (processes <= 1)
        {
            await StormFleet.WarmUpAsync(fleetOf, "main", _settings.Devices, CancellationToken.None);
        }

        await using IStormFleet fleet = processes <= 1
            ? new StormFleet(fleetOf, 0, _settings.Devices)
            : await ShardedStormFleet.StartAsync(fleetOf, _settings.Devices, processes, _settings.Timeout, CancellationToken.None);
        long peakMemory = 0;
        var clock = Stopwatch.StartNew();
        using var timeout = new CancellationTokenSource(_settings.Timeout);
        var all = fleet.RunAsync(clock, timeout.Token);

        void Sample()
        {
            if (server?.Memory() is { } memory)
            {
                peakMemory = Math.Max(peakMemory, memory.Peak);
            }
        }

        if (live)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            await console.Live(Progress(fleet, clock, server)).StartAsync(async context =>
            {
                while (!all.IsCompleted)
                {
                    Sample();
                    context.UpdateTarget(Progress(fleet, clock, server));
                    await Task.WhenAny(all, Task.Delay(250));
                }

                context.UpdateTarget(Progress(fleet, clock, server));
            });
        }
        else
        {
            while (!all.IsCompleted)
            {
                Sample();
                await Task.WhenAny(all, Task.Delay(2000));
                output.Error.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s  registered {fleet.Registered:N0}/{_settings.Devices:N0}  waiting {fleet.Waiting:N0}  retries {fleet.Retries:N0}");
            }
        }

        await all;
        Sample();
        output.Error.WriteLine("Stopping the devices...");
        return Report(fleet, processes, rate.Value, connect, peakMemory, server is not null, states.InMemory);
    }


    private Table Progress(IStormFleet fleet, Stopwatch clock, ServerProcess? server)
    {
        var registered = fleet.Registered;
        var table = new Table().AddColumns("Elapsed", "Registered", "Waiting to retry", "Retries", "Failed", "Server memory");
        var memory = server?.Memory() is { } m ? $"{m.Current / (1024.0 * 1024):N0} MiB (peak {m.Peak / (1024.0 * 1024):N0})" : "-";
        table.AddRow(
            $"{clock.Elapsed.TotalSeconds:0.0} s",
            $"{registered:N0} / {_settings.Devices:N0} ({100.0 * registered / _settings.Devices:0.0} %)",
            $"{fleet.Waiting:N0}",
            $"{fleet.Retries:N0}",
            $"{fleet.Failed:N0}",
            memory);
        return table;
    }

    private BenchReport Report(IStormFleet fleet, int processes, double rate, ConnectStormResult connect, long peakMemory, bool separateServer, bool statesInMemory)
    {
        var report = new BenchReport("storm");
        var times = fleet.RegisteredAt.Where(t => !double.IsNaN(t)).Order().ToArray();
        var n = _settings.Devices;
        double? At(double fraction)
        {
            var needed = (int)Math.Ceiling(fraction * n);
            return times.Length >= needed ? times[needed - 1] : null;
        }

        var registering = n / rate;
        var ideal = connect.Seconds + registering;
        report.Add("sustained registration rate (bench register, 64 devices)", "registrations/s", [rate]);
        report.Add("ideal time (devices / rate)", "s", [registering]);
        report.Add($"connect and subscribe storm, {n:N0} plain MQTT clients", "s", [connect.Seconds]);
        var idealMeasurement = report.Add("ideal (connect and subscribe storm, plus devices / rate)", "s", [ideal]);
        var t50 = At(0.50);
        var t99 = At(0.99);
        var t100 = At(1.0);
        report.Add("time to 50 % registered", "s", [t50 ?? double.NaN]);
        var ninetyNine = report.Add("time to 99 % registered", "s", [t99 ?? double.NaN]);
        report.Add("time to 100 % registered", "s", [t100 ?? double.NaN]);
        var attempts = fleet.Attempts.Select(a => (double)a).ToArray();
        var meanAttempts = report.Add("attempts per device, mean", "attempts", [attempts.Average()]);
        report.Add("attempts per device, max", "attempts", [attempts.Max()]);
        var lost = n - times.Length;
        var lostMeasurement = report.Add("lost devices (not registered in time)", "devices", [lost]);
        report.Ratio("99 % registered / ideal", ninetyNine, idealMeasurement, 1.5, atLeast: false);
        report.Ratio("mean attempts", meanAttempts, new BenchMeasurement("one", "", [1.0]), 1.2, atLeast: false);
        report.Ratio("lost devices", lostMeasurement, new BenchMeasurement("one", "", [1.0]), 0, atLeast: false);
        if (separateServer)
        {
            var memory = report.Add("server peak resident memory (VmHWM)", "MiB", [peakMemory / (1024.0 * 1024)]);
            report.Ratio("server peak memory / 1 GiB", memory, new BenchMeasurement("GiB", "MiB", [1024.0]), 1.0, atLeast: false);
        }
        else
        {
            report.Note("The server ran elsewhere (--broker/--server): its memory was not measured.");
        }

        if (connect.Failed > 0)
        {
            report.Note($"The connect and subscribe storm did not complete: {connect.Failed:N0} of {n:N0} plain clients did not get in{(connect.TimedOut ? " before its timeout" : "")} (last: {connect.LastFailure}); the ideal is unknown.");
        }

        report.Note($"The ideal: {n:N0} plain MQTT clients (anonymous, no device library) connecting at once to the same server just before the storm, each subscribing in one SUBSCRIBE to its response topic and {Protocol.Topics.EnrollTopics.ServerKeys}, as a device does before its first request — the time until the last holds its subscriptions — plus {n:N0} ÷ the sustained registration rate: a storm can neither connect its devices faster nor register them faster than the server sustains.");
        report.Note($"{n:N0} devices, jitter {(_settings.Jitter ? "full" : "none")}, QoS {_settings.QualityOfService}; each a device library instance with its own MQTT connection, credentials in memory and its state folder {(statesInMemory ? "on a memory file system" : "in the scratch folder")}{(processes > 1 ? $", in {processes} load-generator processes started together (tiered compilation off in them)" : "")}, after {StormFleet.WarmUpDescription} in each load-generator process.");
        return report;
    }
}
