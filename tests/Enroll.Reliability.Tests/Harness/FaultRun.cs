using System.Globalization;
using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.Harness;

/// <summary>
/// One row of the fault matrix: a device state folder driven through the real <c>enroll</c> CLI (register, send, run),
/// the attempts it makes while a fault lasts, the faults its health names, and whether every acknowledged send reached
/// the server once the fault was gone. It prints one summary line per fault for docs/reliability.md.
/// </summary>
internal sealed class FaultRun : IAsyncDisposable
{
    /// <summary>The agent's longest backoff in the matrix; the documented default is 60 s.</summary>
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(2);

    /// <summary>How long the agent may back off before the window opens: the 1 s, 2 s steps of the ramp.</summary>
    public static readonly TimeSpan Ramp = TimeSpan.FromSeconds(3);

    /// <summary>The window attempts are counted in.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    private readonly ITestOutputHelper _output;
    private readonly TempDirectory _folder = new("enroll-fault");
    private readonly List<RunningAgent> _agents = [];
    private readonly List<string> _acknowledged = [];

    public FaultRun(string fault, ITestOutputHelper output, string? statePath = null)
    {
        Fault = fault;
        _output = output;
        StatePath = statePath ?? _folder.Combine("state");
        ClientId = $"fm-{fault.Replace('_', '-')}";
    }

    public string Fault { get; }

    public string StatePath { get; }

    public string ClientId { get; }

    public string? DeviceId { get; private set; }

    /// <summary>Message IDs that <c>enroll device send</c> acknowledged (exit code 0).</summary>
    public IReadOnlyList<string> Acknowledged => _acknowledged;

    /// <summary>The attempts per loop the settings allow in the window: the ramp, then one per M/2 (equal jitter), plus one.</summary>
    public static int CeilingPerLoop => 2 + (int)Math.Floor(Window / (MaxBackoff / 2)) + 1;

    /// <summary>Options that make the agent reach its steady state within seconds.</summary>
    public static string[] BackoffOptions => ["--max-backoff", $"{MaxBackoff.TotalSeconds:0}s", "--attempt-timeout", "1s"];

    /// <summary>Options for setting a device up (not measured): patient answers, so a loaded machine does not fail the setup.</summary>
    public static string[] SetupOptions => ["--max-backoff", $"{MaxBackoff.TotalSeconds:0}s", "--attempt-timeout", "10s"];

    /// <summary><c>enroll device register</c>; returns the Device ID.</summary>
    public async Task<string> RegisterAsync(Uri broker, string token, params string[] extra)
    {
        var result = await EnrollProcess.RunAsync(["device", "register", "--broker", broker.ToString(), "--client-id", ClientId, "--token", token, "--state", StatePath, "--json", .. SetupOptions, .. extra], timeout: TimeSpan.FromSeconds(120));
        Assert.True(result.ExitCode == 0, $"register failed: {result}");
        using var json = JsonDocument.Parse(result.StandardOutput);
        DeviceId = json.RootElement.GetProperty("device_id").GetString()!;
        return DeviceId;
    }

    /// <summary><c>enroll device send</c> of <paramref name="count"/> messages; the acknowledged IDs are remembered.</summary>
    public async Task<ProcessResult> SendAsync(Uri broker, int count, string? data = null, string? fakeTime = null)
    {
        var result = await EnrollProcess.RunAsync(
            ["device", "send", "--broker", broker.ToString(), "--client-id", ClientId, "--state", StatePath, "--stream", "matrix", "--data", data ?? "{\"fault\":\"" + Fault + "\",\"n\":{n}}", "--repeat", count.ToString(CultureInfo.InvariantCulture), "--json"],
            fakeTime);
        if (result.ExitCode == 0)
        {
            _acknowledged.AddRange(JsonSerializer.Deserialize<string[]>(result.StandardOutput.Trim())!);
        }

        return result;
    }

    /// <summary>Starts <c>enroll device run</c> with the matrix's short backoff and waits until it says it runs.</summary>
    public async Task<RunningAgent> StartAgentAsync(Uri broker, string? token = null, string? fakeTime = null, params string[] extra)
    {
        string[] arguments = ["device", "run", "--broker", broker.ToString(), "--client-id", ClientId, "--state", StatePath, .. BackoffOptions, .. extra];
        if (token is not null)
        {
            arguments = [.. arguments, "--token", token];
        }

        var agent = EnrollProcess.Start(arguments, _output, $"agent#{_agents.Count + 1}", fakeTime);
        _agents.Add(agent);
        try
        {
            await agent.WaitReadyAsync(TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            // A loaded machine starts it slowly; the measurement then simply begins during its start.
            _output.WriteLine($"{Fault}: the agent did not say it runs within 60 s; measuring anyway");
        }

        return agent;
    }

    /// <summary>
    /// Lets the agent ramp up, then counts <paramref name="attempts"/> over the window while watching its health: the
    /// state folder's file every 250 ms, and <c>enroll device status --json</c> in the middle and at the end.
    /// </summary>
    public async Task<Measurement> MeasureAsync(RunningAgent agent, Func<int> attempts, TimeSpan? window = null, Func<bool>? stopEarly = null)
    {
        var length = window ?? Window;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var shown = new HashSet<string>(StringComparer.Ordinal);
        var atStart = attempts();
        await WatchAsync(Ramp, seen, null);
        var first = attempts();
        var lines = agent.LineCount;
        var started = DateTime.UtcNow;
        await WatchAsync(length / 2, seen, stopEarly);
        foreach (var fault in await AgentHealth.ReadAsync(StatePath))
        {
            shown.Add(fault.Kind);
        }

        await WatchAsync(length - (DateTime.UtcNow - started), seen, stopEarly);
        var counted = attempts() - first;
        var elapsed = DateTime.UtcNow - started;
        var logLines = agent.LineCount - lines;
        foreach (var fault in await AgentHealth.ReadAsync(StatePath))
        {
            shown.Add(fault.Kind);
        }

        return new Measurement(counted, elapsed, shown, seen, logLines, agent.ExitCode, attempts() - atStart);
    }

    private async Task WatchAsync(TimeSpan length, HashSet<string> seen, Func<bool>? stopEarly)
    {
        var until = DateTime.UtcNow + length;
        while (DateTime.UtcNow < until && stopEarly?.Invoke() != true)
        {
            foreach (var fault in AgentHealth.ReadFile(StatePath))
            {
                seen.Add(fault.ToString());
            }

            await Task.Delay(TimeSpan.FromMilliseconds(250));
        }
    }

    /// <summary>Waits until every acknowledged message (but <paramref name="excused"/>) is stored; returns how many are not.</summary>
    public Task<int> CountLostAsync(TestServer server, TimeSpan timeout, IReadOnlyCollection<string>? excused = null) =>
        CountLostAsync(async () => (await server.MessagesAsync()).Select(m => m.MessageId).ToHashSet(StringComparer.Ordinal), timeout, excused);

    /// <summary>Acknowledged sends that <paramref name="delivered"/> (message IDs seen where they should arrive) does not hold within <paramref name="timeout"/>.</summary>
    public async Task<int> CountLostAsync(Func<Task<HashSet<string>>> delivered, TimeSpan timeout, IReadOnlyCollection<string>? excused = null)
    {
        var wanted = _acknowledged.Except(excused ?? []).ToHashSet(StringComparer.Ordinal);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var stored = await delivered();
            var missing = wanted.Count(id => !stored.Contains(id));
            if (missing == 0 || DateTime.UtcNow > deadline)
            {
                return missing;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(200));
        }
    }

    /// <summary>
    /// Prints the summary line, then asserts the three promises: attempts within <paramref name="ceiling"/>, the health
    /// names one of <paramref name="expectedKinds"/>, nothing acknowledged lost.
    /// </summary>
    public void Report(Measurement measured, int ceiling, int lost, string attemptsOf, params string[] expectedKinds)
    {
        var perMinute = measured.Attempts * 60 / Math.Max(1, measured.Elapsed.TotalSeconds);
        // status --json sampled twice, and health.json (what it shows) polled for faults that clear between samples.
        var named = measured.Shown.Intersect(expectedKinds).FirstOrDefault()
            ?? measured.Seen.Select(s => s[(s.IndexOf(':', StringComparison.Ordinal) + 1)..]).Intersect(expectedKinds).FirstOrDefault();
        _output.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"fault={Fault} attempts={measured.Attempts} total={measured.Total} of={attemptsOf} window={measured.Elapsed.TotalSeconds:0}s per_min={perMinute:0} ceiling={ceiling} named={named ?? "none"} shown=[{string.Join(',', measured.Shown.Order(StringComparer.Ordinal))}] file=[{string.Join(',', measured.Seen.Order(StringComparer.Ordinal))}] lost={lost} log_lines={measured.LogLines} exit={measured.ExitCode?.ToString(CultureInfo.InvariantCulture) ?? "running"}"));
        Console.WriteLine($"FAULT-MATRIX fault={Fault} attempts={measured.Attempts} total={measured.Total} of={attemptsOf} per_min={perMinute:0} ceiling={ceiling} named={named ?? "none"} lost={lost}");

        var failures = new List<string>();
        if (measured.Attempts > ceiling)
        {
            failures.Add($"{measured.Attempts} {attemptsOf} in {measured.Elapsed.TotalSeconds:0} s, above the ceiling of {ceiling} that a {MaxBackoff.TotalSeconds:0} s maximum backoff allows");
        }

        if (named is null)
        {
            failures.Add($"enroll device status --json named [{string.Join(", ", measured.Shown)}] (health.json [{string.Join(", ", measured.Seen)}]), not {string.Join(" or ", expectedKinds)}");
        }

        if (lost > 0)
        {
            failures.Add($"{lost} of {_acknowledged.Count} acknowledged messages never reached the server");
        }

        Assert.True(failures.Count == 0, $"{Fault}: {string.Join("; ", failures)}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var agent in _agents)
        {
            await agent.DisposeAsync();
        }

        _folder.Dispose();
    }
}

/// <summary>What one fault's window measured.</summary>
/// <param name="Attempts">Attempts in the window.</param>
/// <param name="Elapsed">The window's real length.</param>
/// <param name="Shown">Fault kinds <c>enroll device status --json</c> showed (sampled twice).</param>
/// <param name="Seen">component:kind pairs health.json held while it was polled.</param>
/// <param name="LogLines">Lines the agent wrote in the window.</param>
/// <param name="ExitCode">The agent's exit code if it ended.</param>
/// <param name="Total">Attempts from the agent's start to the window's end, ramp included (a burst at start shows here).</param>
internal sealed record Measurement(int Attempts, TimeSpan Elapsed, IReadOnlySet<string> Shown, IReadOnlySet<string> Seen, int LogLines, int? ExitCode, int Total);
