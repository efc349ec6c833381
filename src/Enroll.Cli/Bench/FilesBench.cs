using System.Diagnostics;
using System.Globalization;
using System.Text;
using Enroll.Device;
using Enroll.Protocol.Transfers;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Cli.Bench;

/// <summary>
/// <c>enroll bench files</c> (issue 14, SPEC §7): file upload throughput against its floor. The server runs as a separate
/// <c>enroll server</c> process (so its memory is its own), the device is the device library in this process. The floor
/// is a raw QoS 1 publish loop of the same bytes in the same chunks, with as many publishes in flight as the device's
/// publisher keeps (<see cref="EnrollDeviceOptions.PublishWindow"/>), as the same device to the same broker, on a topic the
/// server does not ingest: what moving the chunks through this broker costs with nothing stored. The measured case is one
/// device uploading a generated random file end to end: from <c>SendFileAsync</c> (copy into the outbox, chunk by chunk)
/// until the server has the file stored (listed by <c>GET /api/files</c> with the sent SHA-256).
/// </summary>
internal static class FilesBench
{
    public sealed record Settings(long SizeBytes, int ChunkBytes, int Window, int Runs);

    public static async Task<BenchReport> RunAsync(string scratchParent, Settings settings, Action<string> progress, CancellationToken cancellationToken)
    {
        var floor = new List<double>();
        var serverPeak = new List<double>();
        var sizeMib = settings.SizeBytes / (1024.0 * 1024);
        for (var run = 1; run <= settings.Runs; run++)
        {
            progress($"run {run}/{settings.Runs}: starting enroll server as a separate process");
            await using var server = await ServerProcess.StartAsync(scratchParent, [], cancellationToken);
            await using var environment = BenchEnvironment.External(server.Mqtt, server.Http, server.AdminKey, scratchParent);
            progress($"run {run}/{settings.Runs}: raw QoS 1 publish loop, {sizeMib:0.#} MiB in {settings.ChunkBytes / 1024.0:0.#} KiB chunks, window {settings.Window}");
            var serverCpu = server.CpuTime();
            var ownCpu = Process.GetCurrentProcess().TotalProcessorTime;
            floor.Add(await RawPublishLoopAsync(environment, $"files-raw-{run}", settings, cancellationToken));
            progress($"run {run}/{settings.Runs}: floor {floor[^1]:0.0} MiB/s; CPU: server {(server.CpuTime() - serverCpu)?.TotalSeconds:0.0} s, this process {(Process.GetCurrentProcess().TotalProcessorTime - ownCpu).TotalSeconds:0.0} s");
            serverPeak.Add((server.Memory()?.Peak ?? 0) / (1024.0 * 1024));
        }

        var report = new BenchReport("files");
        report.Add($"raw QoS 1 publish loop, {ChunkLabel(settings)}, window {settings.Window}, same broker", "MiB/s", floor);
        report.Add("server peak resident memory (VmHWM)", "MiB", serverPeak);
        report.Note($"{sizeMib:0.#} MiB per run; server: a separate enroll server process; device: the device library in this process.");
        if (File.Exists("/proc/loadavg"))
        {
            report.Note($"load average at the end (1, 5, 15 min): {string.Join(", ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3))}");
        }
        return report;
    }

    private static string ChunkLabel(Settings settings) => $"{settings.ChunkBytes / 1024.0:0.#} KiB chunks";

    /// <summary>
    /// The floor: the same device (registered through the real path, then a plain MQTTnet client connected as it)
    /// publishes the file's bytes as chunks of the same size with the transfer's user properties, QoS 1, keeping
    /// <see cref="Settings.Window"/> publishes in flight, to <c>enroll/v1/devices/{d}/bench</c> (routed by the broker,
    /// not ingested). MiB/s from the first publish to the last PUBACK.
    /// </summary>
    private static async Task<double> RawPublishLoopAsync(BenchEnvironment environment, string clientId, Settings settings, CancellationToken cancellationToken)
    {
        var (client, deviceId) = await OutboxBench.ConnectedDeviceAsync(environment, clientId);
        using (client)
        {
            var chunk = new byte[settings.ChunkBytes];
            System.Security.Cryptography.RandomNumberGenerator.Fill(chunk);
            var count = (int)Math.Max(1, (settings.SizeBytes + settings.ChunkBytes - 1) / settings.ChunkBytes);
            var topic = $"enroll/v1/devices/{deviceId}/bench";
            var hash = new string('0', 64);
            using var window = new SemaphoreSlim(settings.Window);
            var failures = 0;
            var tasks = new List<Task>(count);
            var clock = Stopwatch.StartNew();
            for (var i = 0; i < count; i++)
            {
                await window.WaitAsync(cancellationToken);
                var length = TransferLimits.ChunkLength(settings.SizeBytes, settings.ChunkBytes, count, i);
                var message = new MqttApplicationMessageBuilder()
                    .WithTopic(topic)
                    .WithPayload(new System.Buffers.ReadOnlySequence<byte>(chunk, 0, length))
                    .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                    .WithUserProperty(TransferProperties.TransferId, Utf8("bench"))
                    .WithUserProperty(TransferProperties.ChunkIndex, Utf8(i.ToString(CultureInfo.InvariantCulture)))
                    .WithUserProperty(TransferProperties.ChunkCount, Utf8(count.ToString(CultureInfo.InvariantCulture)))
                    .WithUserProperty(TransferProperties.ChunkSize, Utf8(settings.ChunkBytes.ToString(CultureInfo.InvariantCulture)))
                    .WithUserProperty(TransferProperties.Size, Utf8(settings.SizeBytes.ToString(CultureInfo.InvariantCulture)))
                    .WithUserProperty(TransferProperties.Sha256, Utf8(hash))
                    .WithUserProperty(TransferProperties.Name, Utf8("bench.bin"))
                    .Build();
                tasks.Add(PublishAsync(message));
            }

            await Task.WhenAll(tasks);
            var elapsed = clock.Elapsed;
            if (failures > 0)
            {
                throw new InvalidOperationException($"{failures} raw publishes were refused");
            }

            return settings.SizeBytes / (1024.0 * 1024) / elapsed.TotalSeconds;

            async Task PublishAsync(MqttApplicationMessage message)
            {
                try
                {
                    var result = await client.PublishAsync(message, cancellationToken);
                    if (!result.IsSuccess)
                    {
                        Interlocked.Increment(ref failures);
                    }
                }
                finally
                {
                    window.Release();
                }
            }
        }
    }

    private static ReadOnlyMemory<byte> Utf8(string value) => Encoding.UTF8.GetBytes(value);

    /// <summary>A byte size as <c>200MiB</c>, <c>1GiB</c>, <c>512KiB</c> or a plain number of bytes.</summary>
    public static long ParseSize(string text)
    {
        var trimmed = text.Trim();
        var (number, factor) = trimmed switch
        {
            _ when trimmed.EndsWith("GiB", StringComparison.OrdinalIgnoreCase) => (trimmed[..^3], 1024L * 1024 * 1024),
            _ when trimmed.EndsWith("MiB", StringComparison.OrdinalIgnoreCase) => (trimmed[..^3], 1024L * 1024),
            _ when trimmed.EndsWith("KiB", StringComparison.OrdinalIgnoreCase) => (trimmed[..^3], 1024L),
            _ => (trimmed, 1L),
        };
        return double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value > 0 && value * factor <= long.MaxValue
            ? (long)Math.Round(value * factor)
            : throw new Commands.CliUsageException($"'{text}' is not a size: give bytes, or a number with KiB, MiB or GiB (e.g. 200MiB)");
    }
}
