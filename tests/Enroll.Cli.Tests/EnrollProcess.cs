using System.Diagnostics;

namespace Enroll.Cli.Tests;

/// <summary>Runs the built <c>enroll</c> executable as a separate process: what a person or a script sees, logs included.</summary>
internal static class EnrollProcess
{
    public static async Task<(int ExitCode, string Out, string Error)> RunAsync(TimeSpan timeout, params string[] args)
    {
        // ENROLL_CLI_UNDER_TEST runs another build (for example the one before a fix, to see these tests fail on it).
        var executable = Environment.GetEnvironmentVariable("ENROLL_CLI_UNDER_TEST") ?? Path.Combine(AppContext.BaseDirectory, "enroll");
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in args)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment.Remove("ENROLL_ADMIN_KEY");
        start.Environment.Remove("ENROLL_SERVER");
        using var process = Process.Start(start)!;
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
            throw new TimeoutException($"enroll {string.Join(' ', args)} did not end within {timeout.TotalSeconds:0} s; stderr so far: {(error.IsCompleted ? error.Result : "(not read)")}");
        }

        return (process.ExitCode, await output, await error);
    }
}
