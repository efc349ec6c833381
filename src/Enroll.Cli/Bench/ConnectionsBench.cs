using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Enroll.Cli.Commands;
using Enroll.Protocol.Topics;
using MQTTnet;

namespace Enroll.Cli.Bench;

/// <summary>
/// <c>enroll bench connections</c> (issue 17): what idle devices cost the broker. Opens N MQTT 5 sessions at once against
/// an <c>enroll server</c> process — each connects, subscribes to its response topics and to the server's key set (taking
/// the retained key set, as a device does) and then stays idle — and reports the time until all are subscribed and the
/// server's resident memory per session above its idle baseline. With Mosquitto installed, the same sessions run
/// against a Mosquitto on this machine in the same run, with a retained message of the key set's size on the same topic,
/// so the embedded broker's connect storm and memory stand next to a C broker's.
/// <para>
/// The sessions are a light client of this benchmark (a socket each, the MQTT packets written by hand, PUBACK and
/// PINGREQ only), not the device library: 50,000 device library instances do not fit one load generator; the
/// 10,000-device storm (<c>enroll bench storm</c>) keeps the device library.
/// </para>
/// </summary>
internal static class ConnectionsBench
{
    // Sessions opening at once; the rest queue behind them. Below both brokers' listen backlogs (Mosquitto's is 100), so
    // the time is the brokers' work, not the kernel's SYN retransmissions.
    private const int ConnectConcurrency = 64;

    public sealed record Settings(int Devices, bool Mosquitto, TimeSpan Settle, int Runs);

    public static async Task<BenchReport> RunAsync(string scratch, Settings settings, Action<string> progress, CancellationToken cancellationToken)
    {
        var report = new BenchReport("connections");
        var limit = FileDescriptors.Raise(settings.Devices * 2L + 4096);
        if (limit < settings.Devices + 1024)
        {
            throw new CliUsageException($"--devices {settings.Devices} needs about {settings.Devices + 1024} open files in this process and in the server, but the limit is {limit} (raise it with `ulimit -n`, as root or in /etc/security/limits.conf)");
        }

        var embeddedTimes = new List<double>();
        var embeddedPerDevice = new List<double>();
        var embeddedBaseline = new List<double>();
        var mosquittoTimes = new List<double>();
        var mosquittoPerDevice = new List<double>();
        var mosquittoBaseline = new List<double>();
        var mosquitto = settings.Mosquitto ? MosquittoProcess.Find() : null;
        if (settings.Mosquitto && mosquitto is null)
        {
            report.Note("Mosquitto is not installed (no `mosquitto` on PATH or in /usr/sbin): its side of the comparison was left out");
        }

        for (var run = 1; run <= settings.Runs; run++)
        {
            progress($"run {run}/{settings.Runs}: starting enroll server as a separate process");
            // The server's own cap (80 % of the open-file limit by default) would otherwise make the last sessions take
            // the places of the first, idle ones: room for every session, which the limit checked above has.
            await using (var server = await ServerProcess.StartAsync(scratch, ["--max-connections", (settings.Devices + ConnectConcurrency).ToString(CultureInfo.InvariantCulture)], cancellationToken))
            {
                var sample = await MeasureAsync($"run {run}/{settings.Runs}: enroll server", server.Mqtt, () => server.Memory()?.Current, settings, progress, cancellationToken);
                embeddedTimes.Add(sample.Seconds);
                embeddedPerDevice.Add(sample.PerDeviceKiB);
                embeddedBaseline.Add(sample.BaselineMiB);
            }

            if (mosquitto is not null)
            {
                progress($"run {run}/{settings.Runs}: starting Mosquitto");
                await using var broker = await MosquittoProcess.StartAsync(mosquitto, scratch, cancellationToken);
                await broker.PublishRetainedAsync(EnrollTopics.ServerKeys, await KeySetSizeAsync(scratch, cancellationToken), cancellationToken);
                var sample = await MeasureAsync($"run {run}/{settings.Runs}: Mosquitto", broker.Mqtt, broker.ResidentBytes, settings, progress, cancellationToken);
                mosquittoTimes.Add(sample.Seconds);
                mosquittoPerDevice.Add(sample.PerDeviceKiB);
                mosquittoBaseline.Add(sample.BaselineMiB);
            }
        }

        var n = settings.Devices.ToString("N0", CultureInfo.InvariantCulture);
        var embeddedTime = report.Add($"enroll server: {n} sessions connected and subscribed (response topics + retained key set)", "s", embeddedTimes);
        report.Add("enroll server: resident memory before the sessions", "MiB", embeddedBaseline);
        var embeddedMemory = report.Add("enroll server: resident memory per idle session above that", "KiB", embeddedPerDevice);
        report.Ratio("enroll server: memory per idle session / 16 KiB", embeddedMemory, new BenchMeasurement("16 KiB", "KiB", [16]), 1, atLeast: false);
        if (mosquittoTimes.Count > 0)
        {
            var mosquittoTime = report.Add($"Mosquitto: {n} sessions connected and subscribed (the same topics, a retained message of the key set's size)", "s", mosquittoTimes);
            report.Add("Mosquitto: resident memory before the sessions", "MiB", mosquittoBaseline);
            report.Add("Mosquitto: resident memory per idle session above that", "KiB", mosquittoPerDevice);
            report.Note($"connect storm, enroll server / Mosquitto (time): {embeddedTime.Median / mosquittoTime.Median:0.00} (no target: how far the embedded broker is from a C broker on this machine)");
        }

        report.Note($"The sessions are this benchmark's light MQTT 5 client (a socket each; CONNECT, SUBSCRIBE, PUBACK, PINGREQ written by hand), anonymous, keep-alive {LightSession.KeepAliveSeconds} s, at most {ConnectConcurrency} connecting at a time; memory is VmRSS {settings.Settle.TotalSeconds:0} s after the last SUBACK. The device library's own sessions are measured by `enroll bench storm`.");
        return report;
    }

    private sealed record Sample(double Seconds, double BaselineMiB, double PerDeviceKiB);

    private static async Task<Sample> MeasureAsync(string label, Uri broker, Func<long?> residentBytes, Settings settings, Action<string> progress, CancellationToken cancellationToken)
    {
        await Task.Delay(settings.Settle, cancellationToken);
        var baseline = residentBytes() ?? 0;
        var prefix = $"conn-{Guid.NewGuid():N}"[..13];
        var sessions = new LightSession?[settings.Devices];
        progress($"{label}: {settings.Devices:N0} sessions connecting and subscribing (resident {baseline / 1048576.0:0.0} MiB before)");
        var clock = Stopwatch.StartNew();
        using var gate = new SemaphoreSlim(ConnectConcurrency);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60) + TimeSpan.FromMilliseconds(settings.Devices * 10.0));
        var done = 0;
        var reporter = Task.Run(async () =>
        {
            while (Volatile.Read(ref done) < settings.Devices && !timeout.IsCancellationRequested)
            {
                await Task.Delay(2000, CancellationToken.None);
                progress($"{label}: {clock.Elapsed.TotalSeconds,6:0.0} s  subscribed {Volatile.Read(ref done):N0}/{settings.Devices:N0}");
            }
        }, CancellationToken.None);
        try
        {
            await Task.WhenAll(Enumerable.Range(0, settings.Devices).Select(async i =>
            {
                await gate.WaitAsync(timeout.Token);
                try
                {
                    sessions[i] = await LightSession.OpenAsync(broker, LightSession.SourceAddress(i), $"{prefix}-{i:D6}", timeout.Token);
                    Interlocked.Increment(ref done);
                }
                finally
                {
                    gate.Release();
                }
            }));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await CloseAsync(sessions);
            throw new InvalidOperationException($"{label}: only {Volatile.Read(ref done):N0} of {settings.Devices:N0} sessions were subscribed before the bench's time limit");
        }

        var seconds = clock.Elapsed.TotalSeconds;
        await reporter;
        try
        {
            progress($"{label}: all subscribed in {seconds:0.00} s; idle for {settings.Settle.TotalSeconds:0} s");
            using var pings = new CancellationTokenSource();
            var keepAlive = KeepAliveAsync(sessions, pings.Token);
            await Task.Delay(settings.Settle, cancellationToken);
            var loaded = residentBytes() ?? 0;
            await pings.CancelAsync();
            await keepAlive;
            var lost = sessions.Count(session => session is { IsOpen: false });
            if (lost > 0)
            {
                throw new InvalidOperationException($"{label}: the broker closed {lost:N0} of the {settings.Devices:N0} idle sessions before their memory was read, so it held fewer than --devices (its connection cap?)");
            }

            var perDevice = (loaded - baseline) / 1024.0 / settings.Devices;
            progress($"{label}: resident {loaded / 1048576.0:0.0} MiB with the sessions: {perDevice:0.0} KiB each");
            return new Sample(seconds, baseline / 1048576.0, perDevice);
        }
        finally
        {
            await CloseAsync(sessions);
        }
    }

    private static async Task KeepAliveAsync(LightSession?[] sessions, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromSeconds(LightSession.KeepAliveSeconds / 2), cancellationToken);
                foreach (var session in sessions)
                {
                    session?.Ping();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task CloseAsync(LightSession?[] sessions)
    {
        foreach (var session in sessions)
        {
            session?.Dispose();
        }

        // Let the broker see the sockets close before it is stopped or measured again.
        await Task.Delay(500);
    }

    /// <summary>The size of the key set the server publishes retained: the payload Mosquitto's side is given.</summary>
    private static async Task<int> KeySetSizeAsync(string scratch, CancellationToken cancellationToken)
    {
        await using var server = await ServerProcess.StartAsync(scratch, [], cancellationToken);
        using var probe = await LightSession.OpenAsync(server.Mqtt, IPAddress.Loopback, $"keyset-{Guid.NewGuid():N}"[..15], cancellationToken);
        return probe.RetainedBytes;
    }

    /// <summary>Mosquitto on a free loopback port in a scratch folder, for the comparison; stopped on dispose.</summary>
    private sealed class MosquittoProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _folder;

        private MosquittoProcess(Process process, string folder, Uri mqtt)
        {
            _process = process;
            _folder = folder;
            Mqtt = mqtt;
        }

        public Uri Mqtt { get; }

        private static readonly string[] Installed = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"];

        public static string? Find() =>
            Installed
                .Concat((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(p => Path.Combine(p, "mosquitto")))
                .FirstOrDefault(File.Exists);

        public static async Task<MosquittoProcess> StartAsync(string executable, string scratch, CancellationToken cancellationToken)
        {
            var folder = Path.Combine(Path.GetFullPath(scratch), $"mosquitto-{Guid.NewGuid():N}");
            Directory.CreateDirectory(folder);
            var port = FreePort();
            var config = Path.Combine(folder, "mosquitto.conf");
            await File.WriteAllTextAsync(config, $"""
                listener {port} 127.0.0.1
                allow_anonymous true
                set_tcp_nodelay true
                max_keepalive 300
                persistence false
                log_dest stderr
                log_type error
                """, cancellationToken);
            var process = Process.Start(new ProcessStartInfo(executable) { ArgumentList = { "-c", config }, UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true })
                ?? throw new InvalidOperationException($"could not start {executable}");
            _ = process.StandardError.ReadToEndAsync(CancellationToken.None);
            _ = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var broker = new MosquittoProcess(process, folder, new Uri($"mqtt://127.0.0.1:{port}"));
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    using var probe = new TcpClient();
                    await probe.ConnectAsync(IPAddress.Loopback, port, cancellationToken);
                    return broker;
                }
                catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(10) && !process.HasExited)
                {
                    await Task.Delay(100, cancellationToken);
                }
                catch (SocketException ex)
                {
                    await broker.DisposeAsync();
                    throw new InvalidOperationException($"Mosquitto did not listen on 127.0.0.1:{port}: {ex.Message}", ex);
                }
            }
        }

        /// <summary>Publishes a retained message of <paramref name="size"/> bytes on <paramref name="topic"/> (QoS 1).</summary>
        public async Task PublishRetainedAsync(string topic, int size, CancellationToken cancellationToken)
        {
            var client = new MqttClientFactory().CreateMqttClient();
            await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer(Mqtt.Host, Mqtt.Port).WithClientId("bench-retain").Build(), cancellationToken);
            await client.PublishAsync(
                new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(new byte[Math.Max(1, size)]).WithRetainFlag().WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build(),
                cancellationToken);
            await client.DisconnectAsync(cancellationToken: cancellationToken);
            client.Dispose();
        }

        public long? ResidentBytes()
        {
            var status = $"/proc/{_process.Id}/status";
            if (!File.Exists(status))
            {
                return null;
            }

            var line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return line is null ? null : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync();
            }

            _process.Dispose();
            try
            {
                Directory.Delete(_folder, recursive: true);
            }
            catch (IOException)
            {
            }
        }

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
    }

    /// <summary>This process's open-file limit (RLIMIT_NOFILE), raised toward what the sessions need where allowed.</summary>
    internal static class FileDescriptors
    {
        private const int RlimitNofile = 7;

        [StructLayout(LayoutKind.Sequential)]
        private struct Rlimit
        {
            public ulong Current;
            public ulong Maximum;
        }

        [DllImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
        private static extern int GetRlimit(int resource, out Rlimit limit);

        [DllImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
        private static extern int SetRlimit(int resource, in Rlimit limit);

        /// <summary>Raises the soft limit to <paramref name="wanted"/> (and the hard one, where this process may); returns the limit now.</summary>
        public static long Raise(long wanted)
        {
            if (!OperatingSystem.IsLinux() || GetRlimit(RlimitNofile, out var limit) != 0)
            {
                return long.MaxValue;
            }

            if ((long)limit.Current >= wanted)
            {
                return (long)limit.Current;
            }

            // Root may raise the hard limit too (the server process started next inherits both).
            var raised = new Rlimit { Current = (ulong)wanted, Maximum = Math.Max(limit.Maximum, (ulong)wanted) };
            if (SetRlimit(RlimitNofile, raised) != 0)
            {
                raised = new Rlimit { Current = Math.Min((ulong)wanted, limit.Maximum), Maximum = limit.Maximum };
                _ = SetRlimit(RlimitNofile, raised);
            }

            return GetRlimit(RlimitNofile, out limit) == 0 ? (long)limit.Current : 0;
        }
    }
}
