using System.Net;
using System.Net.Sockets;
using Npgsql;
using Xunit;

namespace Enroll.Testing;

/// <summary>
/// A real PostgreSQL (Debian's <c>postgresql</c> package) in a temporary folder on a free loopback port, trust
/// authentication on loopback only, <c>fsync=off</c>; stopped and deleted when disposed. One server per test run (an xunit
/// collection fixture); each test class takes a fresh database from <see cref="CreateDatabaseAsync"/>. <c>initdb</c>
/// refuses root, so as root the server runs as the <c>postgres</c> system user the package creates.
/// </summary>
public sealed class PostgresServer : IAsyncLifetime
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(3); // initdb took over a minute on a starved 2-core machine
    private readonly TempDirectory _folder = new("enroll-postgres");
    private string? _bin;
    private int _databases;

    public int Port { get; private set; }

    private string DataPath => _folder.Combine("data");

    private string RunPath => _folder.Combine("run");

    private static bool IsRoot => Environment.UserName == "root";

    /// <summary>A connection string to <paramref name="database"/> (as the superuser, no password: trust on loopback).</summary>
    public string ConnectionString(string database = "postgres") =>
        new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Port, Database = database, Username = "postgres" }.ConnectionString;

    public async Task InitializeAsync()
    {
        _bin = FindBinaries();
        Port = FreePort();
        Directory.CreateDirectory(RunPath);
        Directory.CreateDirectory(DataPath);
        if (IsRoot)
        {
            // The postgres user must reach its folders through the temp folder, and own them.
            await RunAsync("chmod", ["755", _folder.Path]);
            await RunAsync("chown", ["postgres:postgres", RunPath, DataPath]);
        }

        await RunAsync(Path.Combine(_bin, "initdb"), ["-D", DataPath, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"], asPostgres: true);
        await RunAsync(
            Path.Combine(_bin, "pg_ctl"),
            ["-D", DataPath, "-o", $"-p {Port} -k {RunPath} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300", "-w", "-l", Path.Combine(RunPath, "log"), "start"],
            asPostgres: true);
    }

    /// <summary>Creates a new, empty database and returns a connection string to it.</summary>
    public async Task<string> CreateDatabaseAsync(string prefix = "enroll")
    {
        var name = $"{prefix}_{Interlocked.Increment(ref _databases)}_{Guid.NewGuid():N}".ToLowerInvariant();
        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
        await command.ExecuteNonQueryAsync();
        return ConnectionString(name);
    }

    /// <summary>Drops a database made by <see cref="CreateDatabaseAsync"/>, closing whatever connections it still has.</summary>
    public async Task DropDatabaseAsync(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        if (_bin is not null && File.Exists(Path.Combine(DataPath, "postmaster.pid")))
        {
            await RunAsync(Path.Combine(_bin, "pg_ctl"), ["-D", DataPath, "-m", "immediate", "-w", "stop"], asPostgres: true);
        }

        _folder.Dispose();
    }

    private static string FindBinaries()
    {
        var root = "/usr/lib/postgresql";
        var bin = Directory.Exists(root)
            ? Directory.GetDirectories(root)
                .Select(d => Path.Combine(d, "bin"))
                .Where(d => File.Exists(Path.Combine(d, "initdb")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0)
                .FirstOrDefault()
            : null;
        return bin ?? throw new InvalidOperationException(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); this test needs it. Install it with: sudo apt-get install -y postgresql (scripts/test.sh does this for you).");
    }

    private static async Task RunAsync(string program, IEnumerable<string> arguments, bool asPostgres = false)
    {
        var (file, args) = asPostgres && IsRoot
            ? ("runuser", new[] { "-u", "postgres", "--", program }.Concat(arguments))
            : (program, arguments);
        var result = await ExternalTools.RunAsync(file, args.ToList(), ToolTimeout, workingDirectory: "/");
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(program)} failed: {result}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
