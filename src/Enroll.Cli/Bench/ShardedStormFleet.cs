using System.Diagnostics;
using System.Globalization;
using System.Text;
using Enroll.Cli.Infrastructure;

namespace Enroll.Cli.Bench;

/// <summary>
/// The devices of a storm spread over several load-generator processes (<c>enroll bench storm-shard</c>), each a
/// <see cref="StormFleet"/> of its share. One process holds a socket and a state lock per device, so its open-file limit
/// bounds how many device library instances it can run: where that limit cannot be raised far enough (a hard limit of
/// 20,000 leaves room for about 9,000 devices), the storm runs in as many processes as it needs.
/// <para>
/// Each shard prepares its devices and says <c>ready</c>; when all are ready, each is told <c>go</c> at once and starts
/// its clock, reports <c>progress registered waiting retries failed</c> twice a second, and ends with one <c>result</c>
/// line: per device, the seconds until it registered (−1: never) and its attempts.
/// </para>
/// </summary>
internal sealed class ShardedStormFleet : IStormFleet
{
    /// <summary>The longest a shard may take to prepare its devices.</summary>
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromMinutes(2);

    /// <summary>
    /// How the runtime of a shard is set up, through its environment (<c>DOTNET_*</c> settings from the environment of
    /// this process win). Tiered compilation off: each method is compiled optimised once, during the warm-up, instead of
    /// first quickly and then again in the background while the storm runs, which took 8 % of a shard's CPU in the
    /// storm's first seconds.
    /// </summary>
    private static readonly (string Name, string Value)[] LoadGeneratorRuntime =
    [
        ("DOTNET_TieredCompilation", "0"),
    ];

    private readonly Shard[] _shards;

    private ShardedStormFleet(Shard[] shards, int devices)
    {
        _shards = shards;
        RegisteredAt = new double[devices];
        Array.Fill(RegisteredAt, double.NaN);
        Attempts = new int[devices];
        Array.Fill(Attempts, 1);
    }

    public int Registered => _shards.Sum(s => s.Progress[0]);

    public int Waiting => _shards.Sum(s => s.Progress[1]);

    public int Retries => _shards.Sum(s => s.Progress[2]);

    public int Failed => _shards.Sum(s => s.Progress[3]);

    public double[] RegisteredAt { get; }

    public int[] Attempts { get; }

    /// <summary>Starts <paramref name="processes"/> shards of <paramref name="count"/> devices and waits until each has prepared its share.</summary>
    public static async Task<ShardedStormFleet> StartAsync(StormDevices devices, int count, int processes, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var shards = new List<Shard>();
        try
        {
            var share = (count + processes - 1) / processes;
            for (var first = 0; first < count; first += share)
            {
                shards.Add(Shard.Start(devices, first, Math.Min(share, count - first), timeout));
            }

            var fleet = new ShardedStormFleet([.. shards], count);
            using var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            ready.CancelAfter(ReadyTimeout);
            await Task.WhenAll(shards.Select(s => s.Ready.WaitAsync(ready.Token)));
            return fleet;
        }
        catch
        {
            foreach (var shard in shards)
            {
                await shard.DisposeAsync();
            }

            throw;
        }
    }

    public async Task RunAsync(Stopwatch clock, CancellationToken cancellationToken)
    {
        foreach (var shard in _shards)
        {
            await shard.GoAsync();
        }

        foreach (var shard in _shards)
        {
            var (registeredAt, attempts) = await shard.Result.WaitAsync(cancellationToken);
            Array.Copy(registeredAt, 0, RegisteredAt, shard.First, registeredAt.Length);
            Array.Copy(attempts, 0, Attempts, shard.First, attempts.Length);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var shard in _shards)
        {
            await shard.DisposeAsync();
        }
    }

    /// <summary>Runs one shard: <c>enroll bench storm-shard</c> in this process, its devices prepared, waiting for <c>go</c>.</summary>
    public static async Task<int> RunShardAsync(StormDevices devices, int first, int count, TimeSpan timeout, TextReader input, TextWriter output, CancellationToken cancellationToken)
    {
        ConnectionsBench.FileDescriptors.Raise(StormBench.DescriptorsWanted(count));

        // Thousands of devices start at once and each blocks a pool thread briefly (its state lock, its socket); a fresh
        // process's pool grows by a thread or two a second, which would stall the first seconds of the storm in the load
        // generator rather than in the server under test.
        ThreadPool.GetMinThreads(out var workers, out var completion);
        ThreadPool.SetMinThreads(Math.Max(workers, 128), Math.Max(completion, 128));

        // A fresh process compiles its MQTT client and device library code on first use: a shard runs a few plain clients
        // and registers a few rounds of warm-up devices first, so that it does not pay for that inside the measured time.
        await ConnectStorm.RunAsync(devices.Broker, 16, devices.QualityOfService, TimeSpan.FromSeconds(30), $"{devices.Prefix}-warm{first}");
        await StormFleet.WarmUpAsync(devices, first.ToString(CultureInfo.InvariantCulture), count, cancellationToken);
        var fleet = new StormFleet(devices, first, count);
        await using (fleet)
        {
            await output.WriteLineAsync("ready");
            await output.FlushAsync(cancellationToken);
            if (await input.ReadLineAsync(cancellationToken) != "go")
            {
                return ExitCodes.Failure;
            }

            var clock = Stopwatch.StartNew();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            stop.CancelAfter(timeout);
            var run = fleet.RunAsync(clock, stop.Token);
            while (!run.IsCompleted)
            {
                await Task.WhenAny(run, Task.Delay(500, CancellationToken.None));
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"progress {fleet.Registered} {fleet.Waiting} {fleet.Retries} {fleet.Failed}"));
                await output.FlushAsync(CancellationToken.None);
            }

            await run;
            var times = string.Join(',', fleet.RegisteredAt.Select(t => double.IsNaN(t) ? "-1" : t.ToString("R", CultureInfo.InvariantCulture)));
            var attempts = string.Join(',', fleet.Attempts.Select(a => a.ToString(CultureInfo.InvariantCulture)));
            await output.WriteLineAsync($"result {times} {attempts}");
            await output.FlushAsync(CancellationToken.None);
        }

        return ExitCodes.Ok;
    }

    private sealed class Shard : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<(double[], int[])> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly StringBuilder _errors = new();

        private Shard(Process process, int first, int count)
        {
            _process = process;
            First = first;
            Count = count;
        }

        public int First { get; }

        public int Count { get; }

        /// <summary>The shard's last report: registered, waiting, retries, failed.</summary>
        public int[] Progress { get; private set; } = new int[4];

        public Task Ready => _ready.Task;

        public Task<(double[] RegisteredAt, int[] Attempts)> Result => _result.Task;

        public static Shard Start(StormDevices devices, int first, int count, TimeSpan timeout)
        {
            var start = ServerProcess.SameEnroll();
            start.RedirectStandardInput = true;
            foreach (var argument in new[]
            {
                "bench", "storm-shard", "--broker", devices.Broker.ToString(), "--token", devices.Token, "--prefix", devices.Prefix,
                "--first", first.ToString(CultureInfo.InvariantCulture), "--count", count.ToString(CultureInfo.InvariantCulture),
                "--jitter", devices.Jitter ? "full" : "none", "--qos", devices.QualityOfService.ToString(CultureInfo.InvariantCulture),
                "--timeout", $"{(int)Math.Ceiling(timeout.TotalSeconds)}s", "--state-dir", devices.StateRoot,
            })
            {
                start.ArgumentList.Add(argument);
            }

            foreach (var (name, value) in LoadGeneratorRuntime.Where(setting => Environment.GetEnvironmentVariable(setting.Name) is null))
            {
                start.Environment[name] = value;
            }

            var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start a storm shard (enroll bench storm-shard)");
            var shard = new Shard(process, first, count);
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (shard._errors)
                    {
                        shard._errors.AppendLine(e.Data);
                    }
                }
            };
            process.OutputDataReceived += (_, e) => shard.Read(e.Data);
            process.EnableRaisingEvents = true;
            process.Exited += (_, _) => shard.Exited();
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();
            return shard;
        }

        public async Task GoAsync()
        {
            await _process.StandardInput.WriteLineAsync("go");
            await _process.StandardInput.FlushAsync();
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                using var exit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
                if (!_process.HasExited)
                {
                    _process.StandardInput.Close();
                    await _process.WaitForExitAsync(exit.Token);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException or IOException)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.Dispose();
        }

        private void Read(string? line)
        {
            if (line is null)
            {
                return;
            }

            if (line == "ready")
            {
                _ready.TrySetResult();
            }
            else if (line.StartsWith("progress ", StringComparison.Ordinal))
            {
                Progress = line[9..].Split(' ').Select(n => int.Parse(n, CultureInfo.InvariantCulture)).ToArray();
            }
            else if (line.StartsWith("result ", StringComparison.Ordinal))
            {
                var parts = line[7..].Split(' ');
                var times = parts[0].Split(',').Select(t => double.Parse(t, CultureInfo.InvariantCulture)).Select(t => t < 0 ? double.NaN : t).ToArray();
                var attempts = parts[1].Split(',').Select(a => int.Parse(a, CultureInfo.InvariantCulture)).ToArray();
                _result.TrySetResult((times, attempts));
            }
        }

        private void Exited()
        {
            // Give the output reader a moment to deliver the last lines before deciding the shard ended without them.
            _process.WaitForExit();
            string errors;
            lock (_errors)
            {
                errors = _errors.ToString().Trim();
            }

            var failure = new InvalidOperationException($"storm shard of devices {First:N0}–{First + Count - 1:N0} exited with code {_process.ExitCode} before it reported{(errors.Length > 0 ? $": {errors}" : "")}");
            _ready.TrySetException(failure);
            _result.TrySetException(failure);
        }
    }
}
