using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Enroll.Device;
using Enroll.Protocol.Transfers;
using Microsoft.Extensions.DependencyInjection;
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
    private static readonly TimeSpan UploadTimeout = TimeSpan.FromMinutes(10);

    public sealed record Settings(long SizeBytes, int ChunkBytes, int Window, int Runs);

    public static async Task<BenchReport> RunAsync(string scratchParent, Settings settings, Action<string> progress, CancellationToken cancellationToken)
    {
        var floor = new List<double>();
        var upload = new List<double>();
        var copy = new List<double>();
        var serverPeak = new List<double>();
        var devicePeak = new List<double>();
        var sizeMib = settings.SizeBytes / (1024.0 * 1024);
        var verifiedBy = new HashSet<string>(StringComparer.Ordinal);
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

            progress($"run {run}/{settings.Runs}: generating a random {sizeMib:0.#} MiB file");
            var path = Path.Combine(environment.Scratch, "upload.bin");
            var sha256 = await GenerateAsync(path, settings.SizeBytes, cancellationToken);
            progress($"run {run}/{settings.Runs}: one device uploads it (SendFileAsync until GET /api/files lists it stored)");
            serverCpu = server.CpuTime();
            ownCpu = Process.GetCurrentProcess().TotalProcessorTime;
            var measured = await UploadAsync(environment, $"files-dev-{run}", path, sha256, settings, cancellationToken);
            File.Delete(path);
            upload.Add(sizeMib / measured.Total.TotalSeconds);
            copy.Add(measured.Copy.TotalSeconds);
            devicePeak.Add(measured.PeakRss / (1024.0 * 1024));
            verifiedBy.Add(measured.VerifiedBy);
            serverPeak.Add((server.Memory()?.Peak ?? 0) / (1024.0 * 1024));
            progress($"run {run}/{settings.Runs}: upload {upload[^1]:0.0} MiB/s (copy into the outbox {copy[^1]:0.0} s); CPU: server {(server.CpuTime() - serverCpu)?.TotalSeconds:0.0} s, this process {(Process.GetCurrentProcess().TotalProcessorTime - ownCpu).TotalSeconds:0.0} s; device peak RSS {devicePeak[^1]:0} MiB");
        }

        var report = new BenchReport("files");
        var floorMeasurement = report.Add($"raw QoS 1 publish loop, {ChunkLabel(settings)}, window {settings.Window}, same broker", "MiB/s", floor);
        var uploadMeasurement = report.Add($"file upload, 1 device: SendFileAsync → stored by the server ({ChunkLabel(settings)}, window {settings.Window})", "MiB/s", upload);
        report.Add("of which: copy into the outbox (SendFileAsync returned)", "s", copy);
        report.Add("server peak resident memory (VmHWM)", "MiB", serverPeak);
        report.Add("device peak resident memory during the upload (this process)", "MiB", devicePeak);
        report.Ratio("file upload / raw QoS 1 publish", uploadMeasurement, floorMeasurement, 0.5);
        report.Note($"{sizeMib:0.#} MiB of random bytes per run; server: a separate enroll server process (default options); device: the device library in this process, stored verified by {string.Join(" and ", verifiedBy)}.");
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
            RandomNumberGenerator.Fill(chunk);
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

    private sealed record Upload(TimeSpan Copy, TimeSpan Total, long PeakRss, string VerifiedBy);

    /// <summary>
    /// One device, registered and connected with its publisher running and idle; then, timed: <c>SendFileAsync</c> (the
    /// copy into the outbox, chunk by chunk), the publisher sending the chunks, until the server lists the file stored
    /// with the sent SHA-256 (polled every 20 ms). The process's peak memory is reset before and read after.
    /// </summary>
    private static async Task<Upload> UploadAsync(BenchEnvironment environment, string clientId, string path, string sha256, Settings settings, CancellationToken cancellationToken)
    {
        var token = await environment.CreateTokenAsync();
        await using var device = environment.Device(clientId, token, o =>
        {
            o.PublishWindow = settings.Window;
            o.ChunkBytes = settings.ChunkBytes;
            o.MaxFileBytes = Math.Max(o.MaxFileBytes, settings.SizeBytes);
            o.OutboxMaxBytes = Math.Max(o.OutboxMaxBytes, 2 * settings.SizeBytes);
        });
        var registration = device.GetRequiredService<RegistrationService>();
        var identity = await registration.StartAsync(cancellationToken);
        var publisher = device.GetRequiredService<OutboxPublisher>();
        await publisher.StartAsync(cancellationToken);
        var outbox = device.GetRequiredService<DeviceOutbox>();
        try
        {
            using var memory = PeakMemory.Start();
            var clock = Stopwatch.StartNew();
            var transferId = await outbox.SendFileAsync(path, "bench.bin", "application/octet-stream", cancellationToken);
            var copied = clock.Elapsed;
            var deadline = copied + UploadTimeout;
            var api = true;
            while (true)
            {
                if (api && await FileListedAsync(environment, identity.DeviceId, sha256, cancellationToken) is { } listed)
                {
                    if (listed)
                    {
                        return new Upload(copied, clock.Elapsed, await memory.StopAsync(), "GET /api/files (the sent SHA-256)");
                    }
                }
                else
                {
                    // A server without the files API: the device's last PUBACK, which the server sends only once the whole
                    // file is verified and stored.
                    api = false;
                    var transfer = outbox.GetTransfer(transferId);
                    if (transfer?.State == OutboxTransferState.Delivered)
                    {
                        return new Upload(copied, clock.Elapsed, await memory.StopAsync(), "the device's acknowledgement of the last chunk (no /api/files on this server)");
                    }

                    if (transfer is null or { State: OutboxTransferState.Failed })
                    {
                        throw new InvalidOperationException($"the upload failed: {transfer?.Reason ?? "dropped from the outbox"}");
                    }
                }

                if (clock.Elapsed > deadline)
                {
                    throw new TimeoutException($"the server did not store the {settings.SizeBytes} byte file within {UploadTimeout.TotalMinutes:0} min of SendFileAsync returning");
                }

                await Task.Delay(TimeSpan.FromMilliseconds(20), cancellationToken);
            }
        }
        finally
        {
            await publisher.StopAsync(CancellationToken.None);
            await registration.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>Whether GET /api/files lists a file of the device with <paramref name="sha256"/>; null when the server has no such API (404).</summary>
    private static async Task<bool?> FileListedAsync(BenchEnvironment environment, string deviceId, string sha256, CancellationToken cancellationToken)
    {
        using var response = await environment.Admin.GetAsync(new Uri($"/api/files?device={Uri.EscapeDataString(deviceId)}", UriKind.Relative), cancellationToken);
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return null;
        }

        response.EnsureSuccessStatusCode();
        using var document = JsonDocument.Parse(await response.Content.ReadAsStreamAsync(cancellationToken));
        var files = document.RootElement.ValueKind == JsonValueKind.Array
            ? document.RootElement
            : document.RootElement.EnumerateObject().FirstOrDefault(p => p.Value.ValueKind == JsonValueKind.Array).Value;
        return files.ValueKind == JsonValueKind.Array
            && files.EnumerateArray().Any(f => f.TryGetProperty("sha256", out var hash) && hash.GetString() == sha256);
    }

    /// <summary>Writes <paramref name="size"/> random bytes to <paramref name="path"/>; their SHA-256 (lowercase hex).</summary>
    private static async Task<string> GenerateAsync(string path, long size, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var block = new byte[1024 * 1024];
        await using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        for (long written = 0; written < size; written += block.Length)
        {
            var length = (int)Math.Min(block.Length, size - written);
            RandomNumberGenerator.Fill(block.AsSpan(0, length));
            hash.AppendData(block, 0, length);
            await file.WriteAsync(block.AsMemory(0, length), cancellationToken);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>
    /// This process's peak resident memory over an interval: Linux's VmHWM after resetting it (<c>/proc/self/clear_refs</c>),
    /// or, where that is not allowed, the highest VmRSS sampled every 20 ms. 0 where /proc is not there.
    /// </summary>
    private sealed class PeakMemory : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task<long> _sampled;
        private readonly bool _reset;

        private PeakMemory()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            try
            {
                File.WriteAllText("/proc/self/clear_refs", "5");
                _reset = true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _reset = false;
            }

            _sampled = Task.Run(async () =>
            {
                long peak = 0;
                while (!_stop.IsCancellationRequested)
                {
                    peak = Math.Max(peak, Read("VmRSS:"));
                    try
                    {
                        await Task.Delay(TimeSpan.FromMilliseconds(20), _stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }

                return Math.Max(peak, Read("VmRSS:"));
            });
        }

        public static PeakMemory Start() => new();

        public async Task<long> StopAsync()
        {
            await _stop.CancelAsync();
            var sampled = await _sampled;
            return _reset ? Math.Max(sampled, Read("VmHWM:")) : sampled;
        }

        public void Dispose()
        {
            _stop.Cancel();
            _stop.Dispose();
        }

        private static long Read(string field)
        {
            const string status = "/proc/self/status";
            if (!File.Exists(status))
            {
                return 0;
            }

            var line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith(field, StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
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
