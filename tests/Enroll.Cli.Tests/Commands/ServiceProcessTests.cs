using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// <c>enroll server</c> and <c>enroll device run</c> as a service manager runs them: a real process with
/// <c>NOTIFY_SOCKET</c> pointing at a datagram socket the test listens on (the sd_notify protocol of <c>Type=notify</c>)
/// hears <c>READY=1</c> once the process serves and <c>STOPPING=1</c> on SIGTERM; with <c>--log-format json</c> every log
/// line is one JSON object with the fields log shippers index.
/// </summary>
public sealed class ServiceProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Server_TellsTheNotifySocketReadyThenStopping_AndLogsJsonLines()
    {
        using var folder = new TempDirectory();
        using var notify = NotifySocket.Bind(folder.Combine("notify.sock"));
        var (mqtt, http) = (FreePort(), FreePort());
        await using var server = ServiceProcess.Start(
            output,
            notify.Path,
            "server", "--mqtt-port", $"{mqtt}", "--http-port", $"{http}", "--data-dir", folder.Combine("data"), "--log-format", "json");

        Assert.Equal("READY=1", await notify.ReceiveAsync(Patience));
        // READY means serving: the API answers at once.
        using var client = new HttpClient();
        using var ready = await client.GetAsync(new Uri($"http://127.0.0.1:{http}/readyz"));
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);

        server.Terminate();
        Assert.Equal("STOPPING=1", await notify.ReceiveAsync(Patience));
        Assert.Equal(0, await server.ExitCodeAsync(Patience));

        AssertJsonLogLines(server.StandardOutput, expectCategory: "Enroll.Server");
    }

    [Fact]
    public async Task DeviceRun_TellsTheNotifySocketReadyThenStopping_AndLogsJsonLines()
    {
        await using var host = await TestServer.StartAsync(output);
        var token = await host.CreateTokenAsync();
        using var folder = new TempDirectory();
        using var notify = NotifySocket.Bind(folder.Combine("notify.sock"));
        await using var device = ServiceProcess.Start(
            output,
            notify.Path,
            "device", "run", "--broker", host.MqttEndpoint.ToString(), "--client-id", "notify-1", "--token", token.Token!, "--state", folder.Combine("state"), "--log-format", "json");

        Assert.Equal("READY=1", await notify.ReceiveAsync(Patience));
        await Eventually.ReturnsAsync(() => host.ListDevicesAsync(), d => d.Count == 1, Patience, "the agent registered");

        device.Terminate();
        Assert.Equal("STOPPING=1", await notify.ReceiveAsync(Patience));
        Assert.Equal(0, await device.ExitCodeAsync(Patience));

        AssertJsonLogLines(device.StandardOutput.Concat(device.StandardError).ToList(), expectCategory: "Enroll.Device");
    }

    /// <summary>
    /// Every line that is a log entry is a JSON object with Timestamp, EventId, LogLevel, Category and Message; at least
    /// one comes from <paramref name="expectCategory"/> with a non-zero event ID (our own messages all have one).
    /// </summary>
    private void AssertJsonLogLines(IReadOnlyCollection<string> lines, string expectCategory)
    {
        var entries = new List<JsonElement>();
        foreach (var line in lines.Where(l => l.StartsWith('{')))
        {
            using var json = JsonDocument.Parse(line);
            entries.Add(json.RootElement.Clone());
        }

        output.WriteLine($"{entries.Count} JSON log lines of {lines.Count} lines");
        Assert.NotEmpty(entries);
        foreach (var entry in entries)
        {
            Assert.Equal(JsonValueKind.Object, entry.ValueKind);
            Assert.True(DateTimeOffset.TryParse(entry.GetProperty("Timestamp").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _), entry.ToString());
            Assert.Equal(JsonValueKind.Number, entry.GetProperty("EventId").ValueKind);
            Assert.Contains(entry.GetProperty("LogLevel").GetString(), new[] { "Trace", "Debug", "Information", "Warning", "Error", "Critical" });
            Assert.False(string.IsNullOrEmpty(entry.GetProperty("Category").GetString()), entry.ToString());
            Assert.Equal(JsonValueKind.String, entry.GetProperty("Message").ValueKind);
        }

        Assert.Contains(entries, e => e.GetProperty("Category").GetString()!.StartsWith(expectCategory, StringComparison.Ordinal) && e.GetProperty("EventId").GetInt32() != 0);
        // Nothing else is interleaved with the log stream but the human banner lines, which never look like JSON.
        Assert.All(lines.Where(l => l.TrimStart().StartsWith('{') && !l.StartsWith('{')), l => Assert.Fail("an indented JSON fragment: " + l));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The service manager's end of sd_notify: a Unix datagram socket.</summary>
    private sealed class NotifySocket : IDisposable
    {
        private readonly Socket _socket;

        private NotifySocket(Socket socket, string path)
        {
            _socket = socket;
            Path = path;
        }

        public string Path { get; }

        public static NotifySocket Bind(string path)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(path));
            return new NotifySocket(socket, path);
        }

        public async Task<string> ReceiveAsync(TimeSpan timeout)
        {
            var buffer = new byte[4096];
            using var cancel = new CancellationTokenSource(timeout);
            var count = await _socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
            return Encoding.UTF8.GetString(buffer, 0, count).Trim();
        }

        public void Dispose() => _socket.Dispose();
    }

    /// <summary>The <c>enroll</c> of this build as a child process, its output lines kept.</summary>
    private sealed class ServiceProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _out = new();
        private readonly ConcurrentQueue<string> _error = new();

        private ServiceProcess(Process process) => _process = process;

        public IReadOnlyCollection<string> StandardOutput => _out.ToArray();

        public IReadOnlyCollection<string> StandardError => _error.ToArray();

        public static ServiceProcess Start(ITestOutputHelper output, string notifySocket, params string[] args)
        {
            var start = new ProcessStartInfo(System.IO.Path.Combine(AppContext.BaseDirectory, "enroll"))
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var argument in args)
            {
                start.ArgumentList.Add(argument);
            }

            start.Environment["NOTIFY_SOCKET"] = notifySocket;
            start.Environment.Remove("ENROLL_ADMIN_KEY");
            var child = new ServiceProcess(Process.Start(start)!);
            child._process.OutputDataReceived += (_, e) => Keep(child._out, "out", e.Data);
            child._process.ErrorDataReceived += (_, e) => Keep(child._error, "err", e.Data);
            child._process.BeginOutputReadLine();
            child._process.BeginErrorReadLine();
            return child;

            void Keep(ConcurrentQueue<string> lines, string stream, string? line)
            {
                if (line is null)
                {
                    return;
                }

                lines.Enqueue(line);
                try
                {
                    output.WriteLine($"{stream}: {line}");
                }
                catch (InvalidOperationException)
                {
                    // The test already ended.
                }
            }
        }

        /// <summary>SIGTERM, as systemd stops a unit.</summary>
        public void Terminate()
        {
            using var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
        }

        public async Task<int> ExitCodeAsync(TimeSpan timeout)
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
            _process.WaitForExit(); // drains the output readers
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
}
