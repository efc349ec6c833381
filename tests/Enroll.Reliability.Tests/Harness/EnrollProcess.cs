using System.Diagnostics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.Harness;

/// <summary>The built <c>enroll</c> executable, run as a child process exactly as a person or a service manager runs it.</summary>
internal static class EnrollProcess
{
    public static string Executable => Path.Combine(AppContext.BaseDirectory, "enroll");

    /// <summary>Runs one command to completion.</summary>
    public static Task<ProcessResult> RunAsync(IEnumerable<string> arguments, string? fakeTime = null, TimeSpan? timeout = null)
    {
        var (file, args) = Command(arguments, fakeTime);
        return ExternalTools.RunAsync(file, args, timeout ?? TimeSpan.FromSeconds(60), environment: Environment(fakeTime));
    }

    /// <summary>Starts <c>enroll device run</c> (or any long-running command) and returns the running process.</summary>
    public static RunningAgent Start(IEnumerable<string> arguments, ITestOutputHelper output, string label, string? fakeTime = null)
    {
        var (file, args) = Command(arguments, fakeTime);
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in args)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in Environment(fakeTime) ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        return new RunningAgent(Process.Start(start) ?? throw new InvalidOperationException($"cannot start {file}"), output, label);
    }

    // A skewed clock: Debian's libfaketime, preloaded into the child only (not through the faketime wrapper, which would
    // stand between the test and the agent's signals), moves CLOCK_REALTIME, which .NET's DateTime.UtcNow and
    // TimeProvider.System read through clock_gettime. Monotonic time stays real, so timeouts and backoff do too.
    private const string FakeTimeLibrary = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

    private static (string File, IEnumerable<string> Arguments) Command(IEnumerable<string> arguments, string? fakeTime)
    {
        if (fakeTime is not null && !File.Exists(FakeTimeLibrary))
        {
            throw new InvalidOperationException($"{FakeTimeLibrary} is missing; the clock-skew faults need it. Install it with: sudo apt-get install -y faketime (scripts/test.sh does this for you).");
        }

        return (Executable, arguments);
    }

    private static Dictionary<string, string>? Environment(string? fakeTime) => fakeTime is null ? null : new Dictionary<string, string>
    {
        ["LD_PRELOAD"] = FakeTimeLibrary,
        ["FAKETIME"] = fakeTime,
        ["FAKETIME_DONT_FAKE_MONOTONIC"] = "1",
        ["FAKETIME_NO_CACHE"] = "1",
    };
}

/// <summary>A running <c>enroll</c> child: its standard error lines, and a clean stop (SIGTERM, then SIGKILL).</summary>
internal sealed class RunningAgent : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ITestOutputHelper _output;
    private readonly string _label;
    private readonly List<string> _lines = [];
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public RunningAgent(Process process, ITestOutputHelper output, string label)
    {
        _process = process;
        _output = output;
        _label = label;
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    /// <summary>Lines the child wrote so far (its log: a flood of them is a fault too).</summary>
    public int LineCount
    {
        get
        {
            lock (_lines)
            {
                return _lines.Count;
            }
        }
    }

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    /// <summary>Completes when the agent said it runs (or when it ended before that).</summary>
    public Task WaitReadyAsync(TimeSpan timeout) => Task.WhenAny(_ready.Task, _process.WaitForExitAsync()).WaitAsync(timeout);

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        int count;
        lock (_lines)
        {
            _lines.Add(line);
            count = _lines.Count;
        }

        if (line.Contains("Device agent running", StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }

        if (count <= 40)
        {
            try
            {
                _output.WriteLine($"{_label}: {line}");
            }
            catch (InvalidOperationException)
            {
                // The test already ended.
            }
        }
    }

    /// <summary>SIGTERM (the agent stops cleanly and marks its health file not running), then SIGKILL after a grace period.</summary>
    public async Task StopAsync()
    {
        if (_process.HasExited)
        {
            return;
        }

        await ExternalTools.RunAsync("/bin/kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(5));
        try
        {
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(8));
        }
        catch (TimeoutException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _process.Dispose();
    }
}
