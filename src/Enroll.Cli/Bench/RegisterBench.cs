using System.Buffers;
using System.Text.Json;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;

namespace Enroll.Cli.Bench;

/// <summary>
/// <c>enroll bench register</c> (SPEC §7): the broker's ceiling first, a raw MQTT request/response echo with the same
/// broker, client count, QoS and payload size; then the registration work floor (<see cref="RegistrationFloor"/>: the
/// same request and traversals answered by a responder that does only a registration's unavoidable work); then
/// registrations through the real handlers and registry. Floor and registrations are verified as a device verifies
/// them. Reports rate and p50/p99 latency of each and the ratios against the floor (the targets) and the echo.
/// </summary>
internal static class RegisterBench
{
    private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(30);

    public sealed record Settings(int Devices, TimeSpan Duration, TimeSpan Warmup, int QualityOfService, int Runs);

    public static async Task<BenchReport> RunAsync(BenchEnvironment environment, Settings settings, Action<string> progress)
    {
        var report = new BenchReport("register");
        var echoRates = new List<double>();
        var echoP50 = new List<double>();
        var echoP99 = new List<double>();
        var floorRates = new List<double>();
        var floorP50 = new List<double>();
        var floorP99 = new List<double>();
        var registerRates = new List<double>();
        var registerP50 = new List<double>();
        var registerP99 = new List<double>();
        long echoFailures = 0, floorFailures = 0, registerFailures = 0;
        var token = await environment.CreateTokenAsync();
        var serverCheck = new RegistrationAnswerCheck(await RegistrationAnswerCheck.FetchServerKeysAsync(environment.Mqtt, AnswerTimeout));
        await using var floor = await RegistrationFloor.CreateAsync(environment.Scratch, token, "bench");
        var floorCheck = new RegistrationAnswerCheck(floor.KeySet);
        for (var run = 1; run <= settings.Runs; run++)
        {
            var prefix = $"bench-{Guid.NewGuid():N}"[..14] + $"-{run}";
            progress($"run {run}/{settings.Runs}: connecting {settings.Devices} clients");
            var clients = await ConnectAsync(environment.Mqtt, prefix, settings.Devices, settings.QualityOfService);
            try
            {
                // The same bytes for all three phases: each client's registration request.
                var payloads = clients.ToDictionary(c => c, c => RegistrationPayload(c.ClientId, token));

                progress($"run {run}/{settings.Runs}: raw echo, {settings.Devices} clients, QoS {settings.QualityOfService}, {payloads.First().Value.Length} bytes, {settings.Duration.TotalSeconds:0.#} s");
                var echo = await LoadClient.RunAsync(clients, settings.Warmup, settings.Duration, async client =>
                {
                    try
                    {
                        await client.RequestAsync(client.EchoTopic, payloads[client], AnswerTimeout, CancellationToken.None);
                        return true;
                    }
                    catch (TimeoutException)
                    {
                        return false;
                    }
                });

                progress($"run {run}/{settings.Runs}: registration work floor, {settings.Devices} clients, {settings.Duration.TotalSeconds:0.#} s");
                foreach (var client in clients)
                {
                    client.Responder = floor.AnswerAsync;
                }

                var floored = await LoadClient.RunAsync(clients, settings.Warmup, settings.Duration, async client =>
                {
                    try
                    {
                        var answer = await client.RequestAsync(client.FloorTopic, payloads[client], AnswerTimeout, CancellationToken.None);
                        return await floorCheck.AcceptsAsync(answer.Payload.ToArray());
                    }
                    catch (TimeoutException)
                    {
                        return false;
                    }
                });

                progress($"run {run}/{settings.Runs}: registrations, {settings.Devices} devices, {settings.Duration.TotalSeconds:0.#} s");
                var register = await LoadClient.RunAsync(clients, settings.Warmup, settings.Duration, async client =>
                {
                    try
                    {
                        var answer = await client.RequestAsync(EnrollTopics.Register, payloads[client], AnswerTimeout, CancellationToken.None);
                        return await serverCheck.AcceptsAsync(answer.Payload.ToArray());
                    }
                    catch (TimeoutException)
                    {
                        return false;
                    }
                });

                echoFailures += echo.Failed;
                floorFailures += floored.Failed;
                registerFailures += register.Failed;
                echoRates.Add(echo.Rate);
                echoP50.Add(echo.P50Milliseconds);
                echoP99.Add(echo.P99Milliseconds);
                floorRates.Add(floored.Rate);
                floorP50.Add(floored.P50Milliseconds);
                floorP99.Add(floored.P99Milliseconds);
                registerRates.Add(register.Rate);
                registerP50.Add(register.P50Milliseconds);
                registerP99.Add(register.P99Milliseconds);
                progress($"run {run}/{settings.Runs}: echo {echo.Rate:N0}/s p99 {echo.P99Milliseconds:0.0} ms; work floor {floored.Rate:N0}/s p99 {floored.P99Milliseconds:0.0} ms; registrations {register.Rate:N0}/s p99 {register.P99Milliseconds:0.0} ms");
            }
            finally
            {
                await Task.WhenAll(clients.Select(c => c.DisposeAsync().AsTask()));
            }
        }

        var echoRate = report.Add($"raw echo, {settings.Devices} clients, QoS {settings.QualityOfService}", "round trips/s", echoRates);
        report.Add("raw echo p50", "ms", echoP50);
        var echoTail = report.Add("raw echo p99", "ms", echoP99);
        var floorRate = report.Add($"registration work floor, {settings.Devices} clients, QoS {settings.QualityOfService}", "answers/s", floorRates);
        report.Add("work floor p50", "ms", floorP50);
        var floorTail = report.Add("work floor p99", "ms", floorP99);
        var registerRate = report.Add($"registrations, {settings.Devices} devices, QoS {settings.QualityOfService}", "registrations/s", registerRates);
        report.Add("registration p50", "ms", registerP50);
        var registerTail = report.Add("registration p99", "ms", registerP99);
        report.Ratio("registrations / work floor (rate)", registerRate, floorRate, 0.8);
        report.Ratio("registration p99 / work floor p99", registerTail, floorTail, 1.5, atLeast: false);
        report.Ratio("registrations / raw echo (rate)", registerRate, echoRate, 0.8);
        report.Ratio("registration p99 / raw echo p99", registerTail, echoTail, 1.5, atLeast: false);
        Failures(report, "raw echo", echoFailures, null);
        Failures(report, "work floor", floorFailures, floorCheck.LastFailure);
        Failures(report, "registration", registerFailures, serverCheck.LastFailure);

        report.Note("Each device re-registers under its own client ID with an auto-approve token: token check, registry upsert, signing and a new Registration Token per request; the device side verifies both tokens' ES256 signatures (with the server's published key set) before it counts the answer.");
        report.Note("The work floor is the same request over the same broker traversals (client → broker → responder, answer → broker → client), answered by a bare responder in this process that does only what a registration cannot avoid: parse the request, look up the token's SHA-256 in SQLite, sign the access token and the Registration Token (ES256, the server's claims and lifetimes), commit one device row with the registry's group commit (WAL, synchronous=FULL), answer; the requester verifies both tokens as in the registration phase. Each client receives its own requests (anonymous clients may use only their own topics) and hands them to the shared responder; so each request and answer crosses loopback once more than with the embedded broker's in-process handlers (through an external broker the traversals are the same).");
        report.Note("The raw echo skips the token check, both signatures, the commit and the verification: it is reported as the broker's ceiling; the targets are set against the work floor (SPEC §7).");
        if (File.Exists("/proc/loadavg"))
        {
            report.Note($"load average at the end (1, 5, 15 min): {string.Join(", ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3))}");
        }
        return report;
    }

    private static void Failures(BenchReport report, string phase, long failures, string? lastReason)
    {
        if (failures > 0)
        {
            report.Note($"{phase}: {failures} requests failed, timed out or were refused by the device-side checks (not counted in the rates){(lastReason is null ? "" : $"; last reason: {lastReason}")}");
        }
    }

    /// <summary>
    /// <see cref="RunAsync"/> through <paramref name="count"/> <c>enroll server</c> processes on one external broker and one
    /// PostgreSQL registry (a scale-out deployment on one machine), or one process with its own SQLite registry when
    /// <paramref name="database"/> is null (what the embedded broker costs or saves): each with its own <c>--broker-client-id</c>, all with
    /// the first one's admin key and one key-encryption key, so all sign with the keys sealed in the registry and publish
    /// the same key set, as a deployment does (docs/operations.md §9). The load clients connect to the
    /// broker, which shares the requests out among the instances; the report adds the CPU time each instance used, which
    /// shows that each served registrations.
    /// </summary>
    public static async Task<BenchReport> RunOnInstancesAsync(Uri broker, string? database, int count, string scratch, Settings settings, Action<string> progress, CancellationToken cancellationToken)
    {
        var servers = new List<ServerProcess>();
        var sharedEnvironment = new Dictionary<string, string> { ["ENROLL_KEY_ENCRYPTION_KEY"] = Environment.GetEnvironmentVariable("ENROLL_KEY_ENCRYPTION_KEY") ?? ServerProcess.NewKeyEncryptionKey() };
        try
        {
            for (var i = 1; i <= count; i++)
            {
                progress($"starting enroll server {i}/{count} on {broker} (--broker-client-id bench-srv{i})");
                servers.Add(await ServerProcess.StartAsync(
                    scratch,
                    ["--broker", broker.ToString(), .. database is null ? Array.Empty<string>() : ["--database", database], "--broker-client-id", $"bench-srv{i}"],
                    cancellationToken,
                    sameAdminKeyAs: servers.FirstOrDefault(),
                    environment: sharedEnvironment));
            }

            var cpuBefore = servers.Select(s => s.CpuTime()).ToArray();
            BenchReport report;
            await using (var environment = BenchEnvironment.External(broker, servers[0].Http, servers[0].AdminKey, scratch))
            {
                report = await RunAsync(environment, settings, progress);
            }

            for (var i = 0; i < servers.Count; i++)
            {
                if (servers[i].CpuTime() is { } after && cpuBefore[i] is { } before)
                {
                    report.Note($"instance {i + 1} (bench-srv{i + 1}) used {(after - before).TotalSeconds:0.0} s of CPU during the runs");
                }
            }

            report.Note($"{count} enroll server process(es) on {broker} with {(database is null ? "its own SQLite registry" : "one PostgreSQL registry")}; the raw echo and the work floor run on the same broker");
            return report;
        }
        finally
        {
            await Task.WhenAll(servers.Select(s => s.DisposeAsync().AsTask()));
        }
    }

    /// <summary>The sustained registration rate of <paramref name="devices"/> devices over <paramref name="duration"/>, for the storm's ideal time.</summary>
    public static async Task<double> MeasureRateAsync(BenchEnvironment environment, int devices, TimeSpan duration, int qos)
    {
        var token = await environment.CreateTokenAsync();
        var check = new RegistrationAnswerCheck(await RegistrationAnswerCheck.FetchServerKeysAsync(environment.Mqtt, AnswerTimeout));
        var clients = await ConnectAsync(environment.Mqtt, $"rate-{Guid.NewGuid():N}"[..13], devices, qos);
        try
        {
            var payloads = clients.ToDictionary(c => c, c => RegistrationPayload(c.ClientId, token));
            var result = await LoadClient.RunAsync(clients, TimeSpan.FromSeconds(1), duration, async client =>
            {
                try
                {
                    var answer = await client.RequestAsync(EnrollTopics.Register, payloads[client], AnswerTimeout, CancellationToken.None);
                    return await check.AcceptsAsync(answer.Payload.ToArray());
                }
                catch (TimeoutException)
                {
                    return false;
                }
            });
            return result.Rate;
        }
        finally
        {
            await Task.WhenAll(clients.Select(c => c.DisposeAsync().AsTask()));
        }
    }

    private static async Task<List<LoadClient>> ConnectAsync(Uri broker, string prefix, int count, int qos)
    {
        var clients = new LoadClient[count];
        using var gate = new SemaphoreSlim(32);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                clients[i] = await LoadClient.ConnectAsync(broker, $"{prefix}-{i:D5}", qos, CancellationToken.None);
            }
            finally
            {
                gate.Release();
            }
        }));
        return [.. clients];
    }

    private static byte[] RegistrationPayload(string clientId, string token) => JsonSerializer.SerializeToUtf8Bytes(
        new RegistrationRequest
        {
            ClientId = clientId,
            ProvisioningToken = token,
            DeviceName = "bench device",
            Metadata = new Dictionary<string, JsonElement> { ["model"] = Text("bench-1"), ["firmware"] = Text("1.0.0") },
        },
        EnrollJsonContext.Default.RegistrationRequest);

    private static JsonElement Text(string value)
    {
        using var document = JsonDocument.Parse("\"" + System.Text.Encodings.Web.JavaScriptEncoder.Default.Encode(value) + "\"");
        return document.RootElement.Clone();
    }
}
