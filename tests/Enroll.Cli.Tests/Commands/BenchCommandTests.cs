using System.Diagnostics;
using System.Text.Json;
using Enroll.Testing;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// Each <c>enroll bench</c> command runs end to end at a small scale and reports its measurements and its SPEC §7 ratios
/// with their targets. Only the shape is checked: the numbers themselves belong to the benchmarks, not to tests.
/// </summary>
public sealed class BenchCommandTests : IDisposable
{
    private readonly TempDirectory _scratch = new("enroll-bench");

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Register_MeasuresEchoWorkFloorAndRegistrations_AndReportsTheRatiosAgainstFloorAndEcho()
    {
        using var report = await RunAsync("bench", "register", "--devices", "4", "--duration", "1s", "--warmup", "0s", "--runs", "1");

        Assert.True(Median(report, "raw echo, 4 clients, QoS 1") > 0);
        Assert.True(Median(report, "registration work floor, 4 clients, QoS 1") > 0);
        Assert.True(Median(report, "work floor p50") > 0);
        Assert.True(Median(report, "work floor p99") >= Median(report, "work floor p50"));
        Assert.True(Median(report, "registrations, 4 devices, QoS 1") > 0);
        Assert.Equal(
            ["registrations / work floor (rate)", "registration p99 / work floor p99", "registrations / raw echo (rate)", "registration p99 / raw echo p99"],
            RatioNames(report));
        var notes = Notes(report);
        Assert.Contains(notes, n => n.StartsWith("The work floor is ", StringComparison.Ordinal));
        // Every answer of the floor and of the server passed the device-side token checks.
        Assert.DoesNotContain(notes, n => n.StartsWith("work floor:", StringComparison.Ordinal) || n.StartsWith("registration:", StringComparison.Ordinal));
        AssertRatiosCarryTheirTargets(report);
    }

    [Fact]
    public async Task Commands_MeasuresTheEchoFloorAndTwinReportsOfDevicesConnectedAsDevices_AndReportsTheirRatios()
    {
        using var report = await RunAsync("bench", "commands", "--devices", "4", "--duration", "1s", "--warmup", "0s", "--runs", "1", "--paths", "report");

        Assert.True(Median(report, "raw echo through the broker (2 traversals), 4 devices, QoS 1") > 0);
        Assert.True(Median(report, "twin/report round trips, 4 devices") > 0);
        Assert.Equal(["twin/report / raw echo (rate)", "twin/report p99 / raw echo p99"], RatioNames(report));
        AssertRatiosCarryTheirTargets(report);
    }

    [Fact]
    public async Task Commands_MeasuresCommandRoundTripsAndDesiredPushes_AgainstTheEchoFloor()
    {
        using var report = await RunAsync("bench", "commands", "--devices", "3", "--duration", "1s", "--warmup", "0s", "--runs", "1");

        Assert.True(Median(report, "commands: HTTP POST with wait → device → result recorded → HTTP answer, 3 devices") > 0);
        Assert.True(Median(report, "desired patches: HTTP PATCH → push held by the device, 3 devices") > 0);
        Assert.Equal(
            [
                "commands / raw echo (rate)", "command p99 / raw echo p99", "twin/report / raw echo (rate)", "twin/report p99 / raw echo p99",
                "desired patches / raw echo (rate)", "desired patch to device p99 / raw echo p99",
            ],
            RatioNames(report));
        Assert.DoesNotContain(report.RootElement.GetProperty("notes").EnumerateArray(), n => n.GetString()!.Contains("failed or timed out", StringComparison.Ordinal));
        AssertRatiosCarryTheirTargets(report);
    }

    [Fact]
    public async Task RegisterOnOneInstance_OnMosquittoWithItsOwnSqliteRegistry_MeasuresThroughIt()
    {
        await using var broker = await MosquittoBroker.StartAsync();

        using var report = await RunAsync("bench", "register", "--devices", "8", "--duration", "2s", "--warmup", "3s", "--runs", "1", "--broker", broker.Endpoint.ToString(), "--instances", "1");

        Assert.True(Median(report, "registrations, 8 devices, QoS 1") > 0);
        var notes = Notes(report);
        Assert.DoesNotContain(notes, n => n.Contains("requests failed", StringComparison.Ordinal));
        Assert.Contains(notes, n => n.StartsWith($"1 enroll server process(es) on {broker.Endpoint} with its own SQLite registry", StringComparison.Ordinal));
        var cpu = Assert.Single(notes, n => n.StartsWith("instance 1 (bench-srv1)", StringComparison.Ordinal));
        Assert.DoesNotContain(" 0.0 s", cpu, StringComparison.Ordinal);
        AssertRatiosCarryTheirTargets(report);
    }

    [Fact]
    public async Task RegisterOnTwoInstances_OfMosquittoAndPostgreSql_MeasuresThroughBoth()
    {
        await using var broker = await MosquittoBroker.StartAsync();
        var postgres = new PostgresServer();
        await postgres.InitializeAsync();
        try
        {
            var database = await postgres.CreateDatabaseAsync("bench");

            // A long warm-up: two freshly started server processes compile their first registrations on a loaded machine.
            using var report = await RunAsync("bench", "register", "--devices", "8", "--duration", "3s", "--warmup", "5s", "--runs", "1", "--broker", broker.Endpoint.ToString(), "--database", database, "--instances", "2");

            Assert.True(Median(report, "registrations, 8 devices, QoS 1") > 0);
            var notes = report.RootElement.GetProperty("notes").EnumerateArray().Select(n => n.GetString()!).ToList();
            Assert.DoesNotContain(notes, n => n.Contains("requests failed", StringComparison.Ordinal));
            foreach (var instance in new[] { "instance 1 (bench-srv1)", "instance 2 (bench-srv2)" })
            {
                var cpu = Assert.Single(notes, n => n.StartsWith(instance, StringComparison.Ordinal));
                Assert.DoesNotContain(" 0.0 s", cpu, StringComparison.Ordinal);
            }
        }
        finally
        {
            await postgres.DisposeAsync();
        }
    }

    [Theory]
    [InlineData("embedded", "--database", "x", "--instances needs --broker mqtt://")]
    [InlineData("mqtt://127.0.0.1:1", null, null, "--instances above 1 needs --database")]
    public async Task RegisterOnInstances_WithoutAnExternalBrokerAndADatabase_IsAUsageError(string broker, string? option, string? value, string message)
    {
        string[] args = ["bench", "register", "--instances", "2", "--broker", broker, "--dir", _scratch.Path, .. option is null ? Array.Empty<string>() : [option, value!]];

        var (exit, _, error) = await CliRunner.RunAsync(args);

        Assert.NotEqual(0, exit);
        Assert.Contains(message, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Storm_AgainstAServerProcess_RegistersEveryDevice_AndReportsItsMemory()
    {
        var statesBefore = StormStateFolders();
        using var report = await RunAsync("bench", "storm", "--devices", "100", "--rate", "1000", "--timeout", "60s");

        Assert.Equal(0, Median(report, "lost devices (not registered in time)"));
        Assert.Equal(0.1, Median(report, "ideal time (devices / rate)"), 3);
        var connect = Median(report, "connect and subscribe storm, 100 plain MQTT clients");
        Assert.True(connect > 0);
        Assert.Equal(connect + 0.1, Median(report, "ideal (connect and subscribe storm, plus devices / rate)"), 2);
        Assert.True(Median(report, "time to 100 % registered") > 0);
        Assert.True(Median(report, "server peak resident memory (VmHWM)") > 0);
        Assert.Equal(["99 % registered / ideal", "mean attempts", "lost devices", "server peak memory / 1 GiB"], RatioNames(report));
        Assert.DoesNotContain(Notes(report), n => n.StartsWith("The connect and subscribe storm did not complete", StringComparison.Ordinal));
        AssertRatiosCarryTheirTargets(report);

        // The devices' state folders went on the memory file system where there is one, after a warm-up, and went away
        // with the storm.
        var where = Directory.Exists(MemoryFileSystem) ? "state folder on a memory file system" : "state folder in the scratch folder";
        Assert.Contains(Notes(report), n => n.Contains(where, StringComparison.Ordinal) && n.Contains("warm-up devices", StringComparison.Ordinal));
        Assert.Empty(StormStateFolders().Except(statesBefore));
    }

    [Fact]
    public void StormStateRoot_RemovesTheFoldersOfProcessesThatAreGone_AndKeepsTheOthers()
    {
        using var exited = Process.Start(new ProcessStartInfo("true"))!;
        exited.WaitForExit();
        var abandoned = Directory.CreateDirectory(Path.Combine(_scratch.Path, $"enroll-storm-{exited.Id}-{Guid.NewGuid():N}")).FullName;
        File.WriteAllText(Path.Combine(abandoned, "state"), "x");
        var running = Directory.CreateDirectory(Path.Combine(_scratch.Path, $"enroll-storm-{Environment.ProcessId}-{Guid.NewGuid():N}")).FullName;
        var unnamed = Directory.CreateDirectory(Path.Combine(_scratch.Path, $"enroll-storm-{Guid.NewGuid():N}")).FullName;

        Bench.StormStateRoot.RemoveAbandoned(_scratch.Path);

        Assert.False(Directory.Exists(abandoned));
        Assert.True(Directory.Exists(running));
        Assert.True(Directory.Exists(unnamed));
    }

    private const string MemoryFileSystem = "/dev/shm";

    private static string[] StormStateFolders() => Directory.Exists(MemoryFileSystem)
        ? [.. Directory.GetDirectories(MemoryFileSystem, "enroll-storm-*").Order(StringComparer.Ordinal)]
        : [];

    [Theory]
    [InlineData(10_000, 20_000, null)]
    [InlineData(15_000, 20_000, "16024")]
    [InlineData(18_000, 20_000, "19024")]
    [InlineData(100, 1024, "1124")]
    public void StormServer_GetsRoomForEveryDevice_WhereItsDefaultCapWouldNotGiveIt(int devices, long openFileLimit, string? cap)
    {
        var arguments = Bench.StormBench.ServerArguments(devices, openFileLimit);

        Assert.Equal(cap is null ? [] : ["--max-connections", cap], arguments);
    }

    [Fact]
    public async Task Storm_InSeveralLoadGeneratorProcesses_RegistersEveryDevice_AndSaysSo()
    {
        using var report = await RunAsync("bench", "storm", "--devices", "60", "--processes", "2", "--rate", "1000", "--timeout", "60s");

        // Every device of both shards is counted: none lost, each with its attempts, registered after the start.
        Assert.Equal(0, Median(report, "lost devices (not registered in time)"));
        Assert.True(Median(report, "attempts per device, mean") >= 1);
        Assert.True(Median(report, "time to 100 % registered") > 0);
        Assert.Contains(Notes(report), n => n.Contains("in 2 load-generator processes", StringComparison.Ordinal));
        AssertRatiosCarryTheirTargets(report);
    }

    [Fact]
    public async Task Outbox_MeasuresRawSqliteTheOutboxAndTheDrain_AndReportsThreeRatios()
    {
        using var report = await RunAsync("bench", "outbox", "--duration", "1s", "--runs", "1", "--drain-messages", "300");

        Assert.Equal(3, RatioNames(report).Count);
        Assert.All(report.RootElement.GetProperty("measurements").EnumerateArray(), m => Assert.True(m.GetProperty("median").GetDouble() > 0, m.GetProperty("name").GetString()));
        AssertRatiosCarryTheirTargets(report);
    }

    [Fact]
    public async Task Ingest_MeasuresStoredAgainstRawPublishes_AndReportsTheRatio()
    {
        using var report = await RunAsync("bench", "ingest", "--messages", "300", "--runs", "1");

        Assert.Equal(["server ingest / raw QoS 1 publish"], RatioNames(report));
        AssertRatiosCarryTheirTargets(report);
    }

    [Fact]
    public async Task Files_MeasuresTheRawChunkLoopAndAnUploadStoredByAServerProcess_AndReportsTheRatioAndBothMemories()
    {
        using var report = await RunAsync("bench", "files", "--size", "3MiB", "--chunk-bytes", "65536", "--runs", "1");

        Assert.True(Median(report, "raw QoS 1 publish loop, 64 KiB chunks, window 64, same broker") > 0);
        Assert.True(Median(report, "file upload, 1 device: SendFileAsync → stored by the server (64 KiB chunks, window 64)") > 0);
        Assert.True(Median(report, "server peak resident memory (VmHWM)") > 0);
        Assert.True(Median(report, "device peak resident memory during the upload (this process)") > 0);
        Assert.Equal(["file upload / raw QoS 1 publish"], RatioNames(report));
        AssertRatiosCarryTheirTargets(report);
    }

    private async Task<JsonDocument> RunAsync(params string[] args)
    {
        var (exit, output, error) = await CliRunner.RunAsync([.. args, "--json", "--dir", _scratch.Path]);
        Assert.True(exit == 0, $"exit {exit}: {error}");
        return JsonDocument.Parse(output);
    }

    private static double Median(JsonDocument report, string name) =>
        report.RootElement.GetProperty("measurements").EnumerateArray()
            .Single(m => m.GetProperty("name").GetString() == name)
            .GetProperty("median").GetDouble();

    private static List<string> Notes(JsonDocument report) =>
        [.. report.RootElement.GetProperty("notes").EnumerateArray().Select(n => n.GetString()!)];

    private static List<string> RatioNames(JsonDocument report) =>
        [.. report.RootElement.GetProperty("ratios").EnumerateArray().Select(r => r.GetProperty("name").GetString()!)];

    private static void AssertRatiosCarryTheirTargets(JsonDocument report)
    {
        Assert.Contains(" cores, ", report.RootElement.GetProperty("machine").GetString(), StringComparison.Ordinal);
        foreach (var ratio in report.RootElement.GetProperty("ratios").EnumerateArray())
        {
            var value = ratio.GetProperty("value").GetDouble();
            var target = ratio.GetProperty("target").GetDouble();
            var atLeast = ratio.GetProperty("comparison").GetString() == ">=";
            Assert.True(double.IsFinite(value), ratio.GetProperty("name").GetString());
            Assert.Equal(atLeast ? value >= target : value <= target, ratio.GetProperty("met").GetBoolean());
        }
    }
}
