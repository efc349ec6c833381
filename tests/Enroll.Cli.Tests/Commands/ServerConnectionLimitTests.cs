using System.Diagnostics;
using Enroll.Testing;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll server --max-connections</c>: the broker's connection cap chosen on the command line.</summary>
public sealed class ServerConnectionLimitTests
{
    [Fact]
    public async Task Server_WithMaxConnections_StartsWithThatCap()
    {
        using var folder = new TempDirectory("enroll-cli-connections");
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "enroll"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "server", "--mqtt-port", "0", "--http-port", "0", "--data-dir", folder.Path, "--max-connections", "2500" })
        {
            start.ArgumentList.Add(argument);
        }

        var limits = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var server = Process.Start(start)!;
        void Watch(object _, DataReceivedEventArgs e)
        {
            if (e.Data?.Contains("MQTT broker limits", StringComparison.Ordinal) == true)
            {
                limits.TrySetResult(e.Data);
            }
        }

        server.OutputDataReceived += Watch;
        server.ErrorDataReceived += Watch;
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        try
        {
            var line = await limits.Task.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Contains("at most 2500 connections", line, StringComparison.Ordinal);
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            await server.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task Server_WithNoRoomForAConnection_RefusesToStart_SayingTheRange()
    {
        using var folder = new TempDirectory("enroll-cli-connections");

        var result = await CliRunner.RunAsync("server", "--mqtt-port", "0", "--http-port", "0", "--data-dir", folder.Path, "--max-connections", "0");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("the maximum connections (--max-connections) 0 is out of range: use 1 to 10,000,000", result.Error, StringComparison.Ordinal);
    }
}
