using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Enroll.Testing;

namespace Enroll.Reliability.Tests.Harness;

/// <summary>
/// A real Mosquitto whose configuration the test can change while it runs (rewrite, then SIGHUP: Mosquitto reloads its
/// password file and security settings without dropping the listener). Used for "the broker refuses the device's
/// credentials": a password file that knows only the server's user, as an external Mosquitto without device auth.
/// </summary>
internal sealed class Mosquitto : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TempDirectory _folder;
    private readonly string _config;

    private Mosquitto(Process process, TempDirectory folder, string config, int port)
    {
        _process = process;
        _folder = folder;
        _config = config;
        Port = port;
    }

    public int Port { get; }

    public Uri Endpoint => new($"mqtt://127.0.0.1:{Port}");

    public static async Task<Mosquitto> StartWithOnlyUserAsync(string user, string password)
    {
        var mosquitto = ExternalTools.Require("mosquitto", "mosquitto");
        var folder = new TempDirectory("mosquitto-fault");
        var passwd = folder.Combine("users.passwd");
        await File.WriteAllTextAsync(passwd, string.Empty);
        var tool = ExternalTools.Require("mosquitto_passwd", "mosquitto");
        var added = await ExternalTools.RunAsync(tool, ["-b", passwd, user, password], TimeSpan.FromSeconds(20));
        Assert.True(added.ExitCode == 0, $"mosquitto_passwd failed: {added}");
        var port = FreePort();
        var config = folder.Combine("mosquitto.conf");
        await File.WriteAllLinesAsync(config, Lines(port, passwd));
        var start = new ProcessStartInfo(mosquitto) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(config);
        var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start mosquitto");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var broker = new Mosquitto(process, folder, config, port);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, port);
                return broker;
            }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(10) && !process.HasExited)
            {
                await Task.Delay(20); // Mosquitto signals readiness only by accepting connections.
            }
        }
    }

    /// <summary>Drops the password file: from now on every user name is accepted (the fault is gone).</summary>
    public async Task AcceptEveryoneAsync()
    {
        await File.WriteAllLinesAsync(_config, Lines(Port, null));
        var result = await ExternalTools.RunAsync("/bin/kill", ["-HUP", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(5));
        Assert.Equal(0, result.ExitCode);
    }

    private static string[] Lines(int port, string? passwd) =>
        [$"listener {port} 127.0.0.1", "allow_anonymous true", "set_tcp_nodelay true", "persistence false", "log_dest stdout", .. passwd is null ? Array.Empty<string>() : [$"password_file {passwd}"]];

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        _folder.Dispose();
    }
}
