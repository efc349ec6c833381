using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Enroll.Testing;

/// <summary>
/// A real Mosquitto (Debian's <c>mosquitto</c> package) on a free loopback port, with a config, password file and ACL
/// written to a temporary folder; killed and deleted when disposed.
/// </summary>
public sealed class MosquittoBroker : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TempDirectory _folder;
    private readonly string _configPath;
    private readonly List<string> _config;

    private MosquittoBroker(Process process, TempDirectory folder, string configPath, List<string> config, int port)
    {
        _process = process;
        _folder = folder;
        _configPath = configPath;
        _config = config;
        Port = port;
    }

    public int Port { get; }

    public Uri Endpoint => new($"mqtt://127.0.0.1:{Port}");

    /// <summary>
    /// Starts Mosquitto with <paramref name="aclFile"/> or the ACL text <paramref name="acl"/> (when given; for Enroll's,
    /// <c>Enroll.Protocol.Access.MosquittoAcl.Render()</c>) and users from <paramref name="users"/> (user → password).
    /// Anonymous clients are allowed, as in the documented deployment.
    /// </summary>
    public static async Task<MosquittoBroker> StartAsync(string? aclFile = null, IReadOnlyDictionary<string, string>? users = null, string? acl = null)
    {
        var mosquitto = ExternalTools.Require("mosquitto", "mosquitto");
        var folder = new TempDirectory("mosquitto");
        var port = FreePort();
        var config = new List<string>
        {
            $"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "persistence false",
            "log_dest stdout",
        };
        if (users is { Count: > 0 })
        {
            var passwd = folder.Combine("enroll.passwd");
            await File.WriteAllTextAsync(passwd, string.Empty);
            var tool = ExternalTools.Require("mosquitto_passwd", "mosquitto");
            foreach (var (user, password) in users)
            {
                var result = await ExternalTools.RunAsync(tool, ["-b", passwd, user, password], TimeSpan.FromSeconds(20));
                if (result.ExitCode != 0)
                {
                    throw new InvalidOperationException($"mosquitto_passwd failed: {result}");
                }
            }

            config.Add($"password_file {passwd}");
        }

        if (aclFile is not null || acl is not null)
        {
            var aclPath = folder.Combine("enroll.acl");
            await File.WriteAllTextAsync(aclPath, acl ?? await File.ReadAllTextAsync(aclFile!));
            config.Add($"acl_file {aclPath}");
        }

        var configPath = folder.Combine("mosquitto.conf");
        await File.WriteAllLinesAsync(configPath, config);
        var start = new ProcessStartInfo(mosquitto) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(configPath);
        var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start mosquitto");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var broker = new MosquittoBroker(process, folder, configPath, config, port);
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
                await Task.Delay(20); // mosquitto is starting; it signals readiness only by accepting connections
            }
            catch (SocketException)
            {
                await broker.DisposeAsync();
                throw new InvalidOperationException($"mosquitto did not accept connections on port {port}");
            }
        }
    }

    /// <summary>
    /// Drops the password file while the broker runs (rewrite, then SIGHUP: Mosquitto reloads its security settings
    /// without dropping the listener): from now on every user name is accepted.
    /// </summary>
    public async Task AcceptEveryoneAsync()
    {
        await File.WriteAllLinesAsync(_configPath, _config.Where(line => !line.StartsWith("password_file ", StringComparison.Ordinal)));
        var result = await ExternalTools.RunAsync("/bin/kill", ["-HUP", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(5));
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"cannot signal mosquitto to reload: {result}");
        }
    }

    /// <summary>The repository's file <paramref name="relativePath"/> (tests run from bin/; the repository root holds Enroll.slnx).</summary>
    public static string RepositoryFile(string relativePath)
    {
        var folder = new DirectoryInfo(AppContext.BaseDirectory);
        while (folder is not null && !File.Exists(Path.Combine(folder.FullName, "Enroll.slnx")))
        {
            folder = folder.Parent;
        }

        return Path.Combine(folder?.FullName ?? throw new InvalidOperationException("cannot find the repository root"), relativePath);
    }

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
