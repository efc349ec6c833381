using System.Diagnostics;
using System.Threading.Channels;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>
/// A long-running agent process (<c>run</c>, or a <c>send --repeat</c> to kill): its standard output as lines to wait on,
/// its standard error to the test output. Disposing kills whatever is still running.
/// </summary>
internal sealed class AgentProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly List<string> _errors = [];

    private AgentProcess(Process process, ITestOutputHelper output, string name)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                _lines.Writer.TryComplete();
            }
            else
            {
                _lines.Writer.TryWrite(e.Data);
            }
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (_errors)
                {
                    _errors.Add(e.Data);
                }

                try
                {
                    output.WriteLine($"{name}: {e.Data}");
                }
                catch (InvalidOperationException)
                {
                    // The test ended while the process still wrote (it is being killed): nobody reads this line any more.
                }
            }
        };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Id => _process.Id;

    public string Errors
    {
        get
        {
            lock (_errors)
            {
                return string.Join('\n', _errors);
            }
        }
    }

    public static AgentProcess Start(AgentExecutable agent, ITestOutputHelper output, string name, IDictionary<string, string>? environment = null, params string[] args)
    {
        var start = new ProcessStartInfo(agent.FileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in agent.Arguments(args))
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in agent.Environment().Concat(environment ?? new Dictionary<string, string>()))
        {
            start.Environment[key] = value;
        }

        return new AgentProcess(Process.Start(start) ?? throw new InvalidOperationException($"cannot start {agent.FileName}"), output, name);
    }

    /// <summary>The next line of standard output; null once it closed.</summary>
    public async Task<string?> ReadLineAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            return await _lines.Reader.WaitToReadAsync(cancel.Token) && _lines.Reader.TryRead(out var line) ? line : null;
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no line from the agent within {timeout.TotalSeconds:0} s; its errors: {Errors}");
        }
    }

    /// <summary>SIGKILL: no cleanup, no flush (under qemu the emulator is the process, so the agent dies with it).</summary>
    public void Kill() => _process.Kill();

    /// <summary>SIGTERM, as systemd stops a unit; returns the exit code.</summary>
    public async Task<int> TerminateAsync(TimeSpan timeout)
    {
        var kill = await ExternalTools.RunAsync("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10));
        Assert.True(kill.ExitCode == 0, $"kill -TERM: {kill}");
        return await WaitForExitAsync(timeout);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the agent did not exit within {timeout.TotalSeconds:0} s; its errors: {Errors}");
        }

        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
