using System.Diagnostics;

namespace Enroll.Agent.Tests.Configuration;

/// <summary>Runs the built <c>enroll-agent</c> (beside the tests) as a separate process, with only the environment it is given.</summary>
internal static class AgentProcess
{
    /// <summary>The agent executable; <c>ENROLL_AGENT_UNDER_TEST</c> names another build (a published one, for example).</summary>
    public static string Executable => Environment.GetEnvironmentVariable("ENROLL_AGENT_UNDER_TEST") ?? Path.Combine(AppContext.BaseDirectory, "enroll-agent");

    public static ProcessStartInfo StartInfo(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in args)
        {
            start.ArgumentList.Add(argument);
        }

        // The test's own ENROLL_AGENT_* variables (if any) must not leak into the child.
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("ENROLL_AGENT_", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(name);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        return start;
    }

    public static async Task<(int ExitCode, string Out, string Error)> RunAsync(TimeSpan timeout, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using var process = Process.Start(StartInfo(environment, args))!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"enroll-agent {string.Join(' ', args)} did not end within {timeout.TotalSeconds:0} s");
        }

        return (process.ExitCode, await output, await error);
    }
}
