using System.Text.Json;
using Enroll.Testing;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// <c>enroll bench connections</c> at a small scale: idle sessions against an <c>enroll server</c> process and against
/// Mosquitto, reported with the memory-per-session ratio and its target. Only the report's shape is checked.
/// </summary>
public sealed class ConnectionsBenchTests : IDisposable
{
    private readonly TempDirectory _scratch = new("enroll-bench-connections");

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Connections_MeasuresTheServerAndMosquitto_WithTheMemoryPerSessionRatio()
    {
        var (exit, output, error) = await CliRunner.RunAsync(["bench", "connections", "--devices", "50", "--settle", "1s", "--json", "--dir", _scratch.Path]);
        Assert.True(exit == 0, $"exit {exit}: {error}");
        using var report = JsonDocument.Parse(output);

        var measurements = report.RootElement.GetProperty("measurements").EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!, m => m.GetProperty("median").GetDouble());
        Assert.True(measurements["enroll server: 50 sessions connected and subscribed (response topics + retained key set)"] > 0);
        Assert.True(measurements["enroll server: resident memory before the sessions"] > 0);
        Assert.True(measurements.ContainsKey("enroll server: resident memory per idle session above that"));
        Assert.True(measurements["Mosquitto: 50 sessions connected and subscribed (the same topics, a retained message of the key set's size)"] > 0);
        Assert.True(measurements.ContainsKey("Mosquitto: resident memory per idle session above that"));

        var ratio = Assert.Single(report.RootElement.GetProperty("ratios").EnumerateArray());
        Assert.Equal("enroll server: memory per idle session / 16 KiB", ratio.GetProperty("name").GetString());
        Assert.Equal("<=", ratio.GetProperty("comparison").GetString());
        Assert.Equal(ratio.GetProperty("value").GetDouble() <= 1, ratio.GetProperty("met").GetBoolean());
        Assert.Contains(report.RootElement.GetProperty("notes").EnumerateArray(), n => n.GetString()!.Contains("light MQTT 5 client", StringComparison.Ordinal));
    }
}
