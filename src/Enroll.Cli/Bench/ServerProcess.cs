using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Enroll.Cli.Bench;

/// <summary>
/// An <c>enroll server</c> started as a separate process for a benchmark (free loopback ports, data in a scratch folder),
/// so its memory can be read on its own; stopped and deleted on dispose.
/// </summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dataDirectory;

    private ServerProcess(Process process, string dataDirectory, Uri mqtt, Uri http)
    {
        _process = process;
        _dataDirectory = dataDirectory;
        Mqtt = mqtt;
        Http = http;
    }

    public Uri Mqtt { get; }

    public Uri Http { get; }

    public int ProcessId => _process.Id;

    public string AdminKey => File.ReadAllText(Path.Combine(_dataDirectory, "admin.key")).Trim();

    public string DataDirectory => _dataDirectory;

    /// <summary>
    /// Starts <c>enroll server</c> with <paramref name="extraArguments"/> and <paramref name="environment"/> (for one
    /// deployment of several instances, the same <c>ENROLL_KEY_ENCRYPTION_KEY</c>, under which their shared keys are
    /// sealed in the registry). With <paramref name="sameAdminKeyAs"/> (another instance of that deployment) its data
    /// folder starts with that instance's admin key, so both accept it, as an operator would copy it.
    /// </summary>
    public static async Task<ServerProcess> StartAsync(string scratchParent, IEnumerable<string> extraArguments, CancellationToken cancellationToken, ServerProcess? sameAdminKeyAs = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var dataDirectory = Path.Combine(Path.GetFullPath(scratchParent), $"enroll-bench-server-{Guid.NewGuid():N}");
        if (sameAdminKeyAs is not null)
        {
            CopyAdminKey(sameAdminKeyAs._dataDirectory, dataDirectory);
        }

        var mqttPort = FreePort();
        var httpPort = FreePort();
        var start = SameEnroll();
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        foreach (var argument in new[]
        {
            "server", "--mqtt-port", mqttPort.ToString(CultureInfo.InvariantCulture), "--http-port", httpPort.ToString(CultureInfo.InvariantCulture),
            "--data-dir", dataDirectory, "--log-level", "Warning",
        }.Concat(extraArguments))
        {
            start.ArgumentList.Add(argument);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start enroll server");
        var errors = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (errors)
                {
                    errors.AppendLine(e.Data);
                }
            }
        };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var server = new ServerProcess(process, dataDirectory, new Uri($"mqtt://127.0.0.1:{mqttPort}"), new Uri($"http://127.0.0.1:{httpPort}"));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (process.HasExited)
            {
                await server.DisposeAsync();
                throw new InvalidOperationException($"enroll server exited with code {process.ExitCode}: {errors}");
            }

            try
            {
                using var response = await http.GetAsync(new Uri(server.Http, "/healthz"), cancellationToken);
                if (response.IsSuccessStatusCode && File.Exists(Path.Combine(dataDirectory, "admin.key")))
                {
                    return server;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }

            await Task.Delay(100, cancellationToken);
        }

        await server.DisposeAsync();
        throw new TimeoutException("enroll server did not answer /healthz within 60 s");
    }

    /// <summary>
    /// A start of the same enroll that runs this benchmark — the apphost itself, or <c>dotnet enroll.dll</c> — with its
    /// standard streams redirected; the caller adds the command's arguments.
    /// </summary>
    internal static ProcessStartInfo SameEnroll()
    {
        var start = new ProcessStartInfo(Environment.ProcessPath ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var entry = typeof(ServerProcess).Assembly.Location;
        if (Path.GetFileNameWithoutExtension(start.FileName) == "dotnet" && entry.Length > 0)
        {
            start.ArgumentList.Add(entry);
        }

        return start;
    }

    /// <summary>CPU time the server used so far (user + system), or null where /proc is not there.</summary>
    public TimeSpan? CpuTime()
    {
        var stat = $"/proc/{_process.Id}/stat";
        if (!File.Exists(stat))
        {
            return null;
        }

        // Fields after the command name (which may hold spaces, inside parentheses): utime is the 14th, stime the 15th.
        var text = File.ReadAllText(stat);
        var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / 100.0);
    }

    /// <summary>A new key-encryption key as the server reads it (base64 of 32 random bytes).</summary>
    public static string NewKeyEncryptionKey() => Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));

    private static void CopyAdminKey(string from, string to)
    {
        Directory.CreateDirectory(to);
        var target = Path.Combine(to, "admin.key");
        File.Copy(Path.Combine(from, "admin.key"), target);
        if (!OperatingSystem.IsWindows())
        {
            // The server refuses an admin key others can read.
            File.SetUnixFileMode(target, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    /// <summary>The server's resident memory now and at its peak, in bytes (Linux: VmRSS and VmHWM), or null elsewhere.</summary>
    public (long Current, long Peak)? Memory()
    {
        var status = $"/proc/{_process.Id}/status";
        if (!File.Exists(status))
        {
            return null;
        }

        long current = 0, peak = 0;
        foreach (var line in File.ReadLines(status))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                current = Kilobytes(line) * 1024;
            }
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                peak = Kilobytes(line) * 1024;
            }
        }

        return (current, peak);

        static long Kilobytes(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            // SIGTERM lets the server stop cleanly; it is killed if it does not within 10 s.
            using (var term = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-TERM", _process.Id.ToString(CultureInfo.InvariantCulture) }, UseShellExecute = false }))
            {
                if (term is not null)
                {
                    await term.WaitForExitAsync();
                }
            }

            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await _process.WaitForExitAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
