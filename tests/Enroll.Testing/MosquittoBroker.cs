using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;

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
        var folder = new TempDirectory("mosquitto");
        var port = FreePort();
        var config = BaseConfig(port);
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

        return await LaunchAsync(folder, config, port);
    }

    /// <summary>The plugin Debian's <c>mosquitto</c> package ships (<c>dpkg -L mosquitto | grep dynamic</c>).</summary>
    public const string DynamicSecurityPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

    /// <summary>
    /// Starts Mosquitto with its dynamic-security plugin, as docs/operations.md ("Mosquitto with dynamic security")
    /// describes: the config file is made by <c>mosquitto_ctrl dynsec init</c> with <paramref name="serverUser"/> as the
    /// plugin's admin, who is also given the Enroll server's topics (requests as shared subscriptions, answers, keys);
    /// the anonymous group may send the requests, read the server's keys and subscribe to client reply topics. No other
    /// client exists: devices are created by the server. Running as root, Mosquitto drops to user <c>mosquitto</c>, so the
    /// folder is handed to that user (the plugin rewrites its file on every change). With <paramref name="serverIsAdmin"/>
    /// false the server user keeps only its topics, not the plugin's admin role (a misconfigured deployment).
    /// </summary>
    public static async Task<MosquittoBroker> StartWithDynamicSecurityAsync(string serverUser, string serverPassword, bool serverIsAdmin = true)
    {
        var folder = new TempDirectory("mosquitto");
        var port = FreePort();
        var dynsec = folder.Combine("dynamic-security.json");
        var ctrl = ExternalTools.Require("mosquitto_ctrl", "mosquitto");
        var init = await ExternalTools.RunAsync(ctrl, ["dynsec", "init", dynsec, serverUser, serverPassword], TimeSpan.FromSeconds(20));
        if (init.ExitCode != 0)
        {
            folder.Dispose();
            throw new InvalidOperationException($"mosquitto_ctrl dynsec init failed: {init}");
        }

        var document = JsonNode.Parse(await File.ReadAllTextAsync(dynsec))!.AsObject();
        static JsonObject Acl(string type, string topic) => new() { ["acltype"] = type, ["topic"] = topic, ["allow"] = true };
        var serverAcls = new JsonArray(
            Acl("publishClientSend", "enroll/v1/#"),
            Acl("subscribePattern", "enroll/v1/#"),
            Acl("subscribePattern", "$share/enroll/enroll/v1/#"),
            Acl("unsubscribePattern", "$share/enroll/enroll/v1/#"));
        var anonymousAcls = new JsonArray(
            Acl("subscribePattern", "enroll/v1/clients/+/responses"),
            Acl("subscribePattern", "enroll/v1/server/keys"),
            Acl("unsubscribePattern", "#"));
        foreach (var topic in Enroll.Protocol.Requests.EnrollRequests.Open.Select(r => r.Topic))
        {
            anonymousAcls.Add(Acl("publishClientSend", topic));
        }

        document["roles"]!.AsArray().Add(new JsonObject { ["rolename"] = "enroll-server", ["acls"] = serverAcls });
        document["roles"]!.AsArray().Add(new JsonObject { ["rolename"] = "enroll-anonymous", ["acls"] = anonymousAcls });
        var admin = document["clients"]!.AsArray().Single(c => (string?)c!["username"] == serverUser)!.AsObject();
        admin["roles"] = serverIsAdmin
            ? new JsonArray(new JsonObject { ["rolename"] = "admin" }, new JsonObject { ["rolename"] = "enroll-server" })
            : new JsonArray(new JsonObject { ["rolename"] = "enroll-server" });
        document["groups"] = new JsonArray(new JsonObject { ["groupname"] = "anonymous", ["roles"] = new JsonArray(new JsonObject { ["rolename"] = "enroll-anonymous" }) });
        document["anonymousGroup"] = "anonymous";
        await File.WriteAllTextAsync(dynsec, document.ToJsonString());

        await HandToMosquittoUserAsync(folder.Path);
        var config = BaseConfig(port);
        config.Add($"plugin {DynamicSecurityPlugin}");
        config.Add($"plugin_opt_config_file {dynsec}");
        var broker = await LaunchAsync(folder, config, port);
        broker.DynamicSecurityFile = dynsec;
        return broker;
    }

    /// <summary>The dynamic-security file the plugin keeps (null without the plugin).</summary>
    public string? DynamicSecurityFile { get; private set; }

    /// <summary>Mosquitto started as root drops to user <c>mosquitto</c>, which must be able to write the plugin's file.</summary>
    private static async Task HandToMosquittoUserAsync(string folder)
    {
        if (!string.Equals(Environment.UserName, "root", StringComparison.Ordinal))
        {
            return;
        }

        var result = await ExternalTools.RunAsync("/bin/chown", ["-R", "mosquitto:", folder], TimeSpan.FromSeconds(10));
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"cannot give {folder} to user mosquitto: {result}");
        }
    }

    private static List<string> BaseConfig(int port) =>
    [
        $"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "persistence false",
        "log_dest stdout",
    ];

    private static async Task<MosquittoBroker> LaunchAsync(TempDirectory folder, List<string> config, int port)
    {
        var mosquitto = ExternalTools.Require("mosquitto", "mosquitto");
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
