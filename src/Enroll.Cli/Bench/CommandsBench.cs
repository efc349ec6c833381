using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Device;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Cli.Bench;

/// <summary>
/// <c>enroll bench commands</c> (issue 13, SPEC §7): N devices connected as devices to the server's broker. First the
/// floor: a raw echo through the same broker at the same concurrency and payload sizes (each device publishes a
/// command-sized message to a topic of its own, the broker routes it back, the device answers with a result-sized
/// message, the broker routes that back: the two broker traversals a command round trip needs). Then the real paths:
/// command round trips (the operator's <c>POST /api/devices/{id}/commands</c> with <c>wait</c> → the server stores and
/// publishes the command → the device answers on <c>commands/result</c> → the server records it and the HTTP call
/// returns the result), twin/report round trips, and desired patch to device (<c>PATCH .../twin/desired</c> until the
/// device holds the pushed patch). Reports rates and p50/p99 with their ratios to the echo.
/// </summary>
internal static class CommandsBench
{
    private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The paths <c>--paths</c> can pick, in the order they run (the echo floor always runs first).</summary>
    public static readonly string[] Paths = ["command", "report", "desired"];

    public sealed record Settings(int Devices, TimeSpan Duration, TimeSpan Warmup, int Runs, int PayloadBytes, IReadOnlyCollection<string> Paths);

    public static async Task<BenchReport> RunAsync(BenchEnvironment environment, Settings settings, Action<string> progress)
    {
        var report = new BenchReport("commands");
        var phases = new Dictionary<string, List<LoadResult>>(StringComparer.Ordinal);
        long failures = 0;
        var data = new string('x', Math.Max(0, settings.PayloadBytes));
        for (var run = 1; run <= settings.Runs; run++)
        {
            progress($"run {run}/{settings.Runs}: registering and connecting {settings.Devices} devices");
            var devices = await ConnectAsync(environment, $"cmd-{Guid.NewGuid():N}"[..12] + $"-{run}", settings.Devices, data);
            try
            {
                var sizes = devices[0];
                progress($"run {run}/{settings.Runs}: raw echo, {settings.Devices} devices, QoS 1, {sizes.CommandSample.Length} bytes out and {sizes.ResultSample.Length} back, {settings.Duration.TotalSeconds:0.#} s");
                Record("echo", await LoadClient.RunAsync(devices, settings.Warmup, settings.Duration, device => device.EchoAsync(AnswerTimeout)));

                if (settings.Paths.Contains("command"))
                {
                    progress($"run {run}/{settings.Runs}: commands sent over HTTP with wait, answered by the devices");
                    Record("command", await LoadClient.RunAsync(devices, settings.Warmup, settings.Duration, device => device.CommandAsync(environment.Admin, AnswerTimeout)));
                }

                if (settings.Paths.Contains("report"))
                {
                    progress($"run {run}/{settings.Runs}: twin/report round trips");
                    Record("report", await LoadClient.RunAsync(devices, settings.Warmup, settings.Duration, device => device.ReportAsync(AnswerTimeout)));
                }

                if (settings.Paths.Contains("desired"))
                {
                    progress($"run {run}/{settings.Runs}: desired patches over HTTP until the device holds the push");
                    Record("desired", await LoadClient.RunAsync(devices, settings.Warmup, settings.Duration, device => device.DesiredAsync(environment.Admin, AnswerTimeout)));
                }

                progress($"run {run}/{settings.Runs}: " + string.Join("; ", phases.Select(p => $"{p.Key} {p.Value[^1].Rate:N0}/s p99 {p.Value[^1].P99Milliseconds:0.0} ms")));
            }
            finally
            {
                await Task.WhenAll(devices.Select(d => d.DisposeAsync().AsTask()));
            }
        }

        var n = settings.Devices;
        var echoRate = report.Add($"raw echo through the broker (2 traversals), {n} devices, QoS 1", "round trips/s", phases["echo"].Select(r => r.Rate));
        report.Add("raw echo p50", "ms", phases["echo"].Select(r => r.P50Milliseconds));
        var echoTail = report.Add("raw echo p99", "ms", phases["echo"].Select(r => r.P99Milliseconds));
        if (phases.TryGetValue("command", out var commands))
        {
            var rate = report.Add($"commands: HTTP POST with wait → device → result recorded → HTTP answer, {n} devices", "round trips/s", commands.Select(r => r.Rate));
            report.Add("command p50", "ms", commands.Select(r => r.P50Milliseconds));
            var tail = report.Add("command p99", "ms", commands.Select(r => r.P99Milliseconds));
            report.Ratio("commands / raw echo (rate)", rate, echoRate, 0.5);
            report.Ratio("command p99 / raw echo p99", tail, echoTail, 2, atLeast: false);
        }

        if (phases.TryGetValue("report", out var reports))
        {
            var rate = report.Add($"twin/report round trips, {n} devices", "round trips/s", reports.Select(r => r.Rate));
            report.Add("twin/report p50", "ms", reports.Select(r => r.P50Milliseconds));
            var tail = report.Add("twin/report p99", "ms", reports.Select(r => r.P99Milliseconds));
            report.Ratio("twin/report / raw echo (rate)", rate, echoRate, 0.5);
            report.Ratio("twin/report p99 / raw echo p99", tail, echoTail, 2, atLeast: false);
        }

        if (phases.TryGetValue("desired", out var desired))
        {
            var rate = report.Add($"desired patches: HTTP PATCH → push held by the device, {n} devices", "patches/s", desired.Select(r => r.Rate));
            report.Add("desired patch to device p50", "ms", desired.Select(r => r.P50Milliseconds));
            var tail = report.Add("desired patch to device p99", "ms", desired.Select(r => r.P99Milliseconds));
            report.Ratio("desired patches / raw echo (rate)", rate, echoRate, 0.5);
            report.Ratio("desired patch to device p99 / raw echo p99", tail, echoTail, 2, atLeast: false);
        }

        if (failures > 0)
        {
            report.Note($"{failures} round trips failed or timed out (not counted in the rates)");
        }

        report.Note($"Each device has one round trip outstanding at a time; payload {settings.PayloadBytes} bytes of data in the command and in the result.");
        if (File.Exists("/proc/loadavg"))
        {
            report.Note($"load average at the end (1, 5, 15 min): {string.Join(", ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3))}");
        }

        return report;

        void Record(string phase, LoadResult result)
        {
            failures += result.Failed;
            if (!phases.TryGetValue(phase, out var results))
            {
                phases[phase] = results = [];
            }

            results.Add(result);
        }
    }

    private static async Task<List<BenchDevice>> ConnectAsync(BenchEnvironment environment, string prefix, int count, string data)
    {
        var token = await environment.CreateTokenAsync();
        var devices = new BenchDevice[count];
        using var gate = new SemaphoreSlim(16);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                devices[i] = await BenchDevice.ConnectAsync(environment, $"{prefix}-{i:D5}", token, data);
            }
            finally
            {
                gate.Release();
            }
        }));
        return [.. devices];
    }

    /// <summary>
    /// One simulated device: registered through the real path, then a plain MQTT client connected as the device and
    /// subscribed to its own topics, which answers every command it is pushed with a result and keeps the desired patches.
    /// </summary>
    private sealed class BenchDevice : IAsyncDisposable
    {
        private readonly IMqttClient _client;
        private readonly string _deviceId;
        private readonly string _data;
        private readonly ConcurrentDictionary<string, TaskCompletionSource> _pending = new(StringComparer.Ordinal);
        private long _sequence;

        private BenchDevice(IMqttClient client, string deviceId, string data)
        {
            _client = client;
            _deviceId = deviceId;
            _data = data;
            CommandSample = JsonSerializer.SerializeToUtf8Bytes(
                new DeviceCommand { CommandId = "cmd_01kgz7m0v0cq9yxbt1m5e4r3qa", Name = "bench", Payload = Payload(), ExpiresAt = DateTimeOffset.UnixEpoch },
                EnrollJsonContext.Default.DeviceCommand);
            ResultSample = Result("cmd_01kgz7m0v0cq9yxbt1m5e4r3qa");
            _client.ApplicationMessageReceivedAsync += e =>
            {
                // Answers are published off the receive loop: a QoS 1 publish awaited here would wait for a PUBACK this loop reads.
                var message = e.ApplicationMessage;
                var suffix = message.Topic[EnrollTopics.DeviceNamespace(_deviceId).Length..];
                switch (suffix)
                {
                    case "bench/ping":
                        _ = Task.Run(() => PublishAsync("bench/pong", ResultSample, message.CorrelationData));
                        break;
                    case "bench/pong":
                    case "responses":
                        Complete(message.CorrelationData is { } correlation ? Encoding.ASCII.GetString(correlation) : null);
                        break;
                    case "commands":
                        if (JsonSerializer.Deserialize(message.Payload.FirstSpan, EnrollJsonContext.Default.DeviceCommand) is { CommandId: { } commandId })
                        {
                            _ = Task.Run(() => PublishAsync("commands/result", Result(commandId), Encoding.ASCII.GetBytes("r" + commandId), EnrollTopics.DeviceResponses(_deviceId)));
                        }

                        break;
                    case "twin/desired":
                        if (JsonSerializer.Deserialize(message.Payload.FirstSpan, EnrollJsonContext.Default.TwinDesiredPatch)?.Patch?["bench_seq"] is JsonValue seq)
                        {
                            Complete("d" + seq.GetValue<long>().ToString(CultureInfo.InvariantCulture));
                        }

                        break;
                }

                return Task.CompletedTask;
            };
        }

        /// <summary>A command as the server publishes it with this run's payload: what the echo sends out.</summary>
        public byte[] CommandSample { get; }

        /// <summary>The result the device answers every command with: what the echo sends back.</summary>
        public byte[] ResultSample { get; }

        public static async Task<BenchDevice> ConnectAsync(BenchEnvironment environment, string clientId, string token, string data)
        {
            string deviceId;
            string accessToken;
            await using (var device = environment.Device(clientId, token))
            {
                var registration = device.GetRequiredService<RegistrationService>();
                deviceId = (await registration.StartAsync()).DeviceId;
                await registration.StopAsync();
                accessToken = (await device.GetRequiredService<ICredentialStore>().LoadAsync())!.AccessToken!;
            }

            var client = new MqttClientFactory().CreateMqttClient();
            var bench = new BenchDevice(client, deviceId, data);
            await client.ConnectAsync(new MqttClientOptionsBuilder()
                .WithTcpServer(environment.Mqtt.Host, environment.Mqtt.Port)
                .WithClientId(clientId)
                .WithCredentials(deviceId, accessToken)
                .WithCleanStart(true)
                .WithTimeout(TimeSpan.FromSeconds(30))
                .Build());
            var own = EnrollTopics.DeviceNamespace(deviceId);
            var subscribe = new MqttClientSubscribeOptionsBuilder();
            foreach (var suffix in new[] { "responses", "commands", "twin/desired", "bench/ping", "bench/pong" })
            {
                subscribe.WithTopicFilter(own + suffix, MqttQualityOfServiceLevel.AtLeastOnce);
            }

            var subscribed = await client.SubscribeAsync(subscribe.Build());
            if (subscribed.Items.FirstOrDefault(i => (int)i.ResultCode > 2) is { } refused)
            {
                throw new InvalidOperationException($"the broker refused {deviceId} its own topic {refused.TopicFilter.Topic}: {refused.ResultCode}");
            }

            return bench;
        }

        /// <summary>The floor: a command-sized message out through the broker and a result-sized one back.</summary>
        public Task<bool> EchoAsync(TimeSpan timeout)
        {
            var key = "e" + Next();
            return RoundTripAsync(key, () => PublishAsync("bench/ping", CommandSample, Encoding.ASCII.GetBytes(key)), timeout);
        }

        /// <summary>A command through the operator API with <c>wait</c>: true when the call returned the device's result.</summary>
        public async Task<bool> CommandAsync(HttpClient admin, TimeSpan timeout)
        {
            using var body = JsonContent.Create(new JsonObject { ["name"] = "bench", ["payload"] = Payload(), ["ttl"] = "60s" });
            using var cancel = new CancellationTokenSource(timeout);
            try
            {
                using var response = await admin.PostAsync(new Uri($"/api/devices/{_deviceId}/commands?wait=30s", UriKind.Relative), body, cancel.Token);
                if (!response.IsSuccessStatusCode)
                {
                    throw new InvalidOperationException($"POST /api/devices/{_deviceId}/commands answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancel.Token)}");
                }

                var command = await response.Content.ReadFromJsonAsync<JsonObject>(cancel.Token);
                return (string?)command?["state"] == CommandStatuses.Succeeded;
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                return false;
            }
        }

        /// <summary>A twin/report request answered after the server committed it.</summary>
        public Task<bool> ReportAsync(TimeSpan timeout)
        {
            var seq = Next();
            var key = "t" + seq;
            var request = new TwinReportRequest { Patch = new JsonObject { ["bench_seq"] = seq } };
            return RoundTripAsync(
                key,
                () => PublishAsync("twin/report", JsonSerializer.SerializeToUtf8Bytes(request, EnrollJsonContext.Default.TwinReportRequest), Encoding.ASCII.GetBytes(key), EnrollTopics.DeviceResponses(_deviceId)),
                timeout);
        }

        /// <summary>A desired patch through the operator API, until its push reached the device.</summary>
        public Task<bool> DesiredAsync(HttpClient admin, TimeSpan timeout)
        {
            var seq = Next();
            return RoundTripAsync("d" + seq, async () =>
            {
                using var body = new StringContent($$"""{"bench_seq":{{seq}}}""", Encoding.UTF8, "application/merge-patch+json");
                using var response = await admin.PatchAsync(new Uri($"/api/devices/{_deviceId}/twin/desired", UriKind.Relative), body);
                if (!response.IsSuccessStatusCode)
                {
                    throw new InvalidOperationException($"PATCH /api/devices/{_deviceId}/twin/desired answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                }
            }, timeout);
        }

        public async ValueTask DisposeAsync()
        {
            if (_client.IsConnected)
            {
                await _client.DisconnectAsync();
            }

            _client.Dispose();
        }

        private long Next() => Interlocked.Increment(ref _sequence);

        private JsonObject Payload() => new() { ["data"] = _data };

        private byte[] Result(string commandId) => JsonSerializer.SerializeToUtf8Bytes(
            new CommandResultRequest { CommandId = commandId, Status = CommandStatuses.Succeeded, Payload = Payload() },
            EnrollJsonContext.Default.CommandResultRequest);

        private async Task<bool> RoundTripAsync(string key, Func<Task> send, TimeSpan timeout)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _pending[key] = done;
            try
            {
                await send();
                await done.Task.WaitAsync(timeout);
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
            finally
            {
                _pending.TryRemove(key, out _);
            }
        }

        private void Complete(string? key)
        {
            if (key is not null && _pending.TryGetValue(key, out var done))
            {
                done.TrySetResult();
            }
        }

        private async Task PublishAsync(string suffix, byte[] payload, byte[]? correlation, string? responseTopic = null)
        {
            var message = new MqttApplicationMessageBuilder()
                .WithTopic(EnrollTopics.DeviceNamespace(_deviceId) + suffix)
                .WithPayload(payload)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .WithCorrelationData(correlation ?? []);
            if (responseTopic is not null)
            {
                message.WithResponseTopic(responseTopic);
            }

            var result = await _client.PublishAsync(message.Build());
            if (!result.IsSuccess)
            {
                throw new InvalidOperationException($"the broker refused {suffix} of {_deviceId}: {result.ReasonCode}");
            }
        }
    }
}
