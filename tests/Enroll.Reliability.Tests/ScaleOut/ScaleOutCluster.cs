using System.Security.Cryptography;
using Enroll.Testing;
using Npgsql;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.ScaleOut;

/// <summary>
/// One PostgreSQL server for the scale-out tests (each test takes a database of its own). Not run in parallel with other
/// collections: two servers, Mosquitto, PostgreSQL and a fleet of devices load the machine enough to disturb the fault
/// matrix's timing windows, and its child processes would slow the failover test's fleet.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ScaleOutGroup : ICollectionFixture<PostgresServer>
{
    public const string Name = "scale-out";
}

/// <summary>
/// The documented scale-out deployment, for real: Mosquitto with its dynamic-security plugin, a PostgreSQL database, and
/// two <c>enroll server</c> instances (<c>srvA</c>, <c>srvB</c>) on them, each with its own data folder and client ID,
/// requiring encrypted requests as a shared Mosquitto needs. Everything is stopped and deleted on dispose.
/// </summary>
internal sealed class ScaleOutCluster : IAsyncDisposable
{
    public const string ServerUser = "enroll-server";
    private const string ServerPassword = "server-secret-for-scale-out-tests";
    private readonly PostgresServer _postgres;
    private readonly TempDirectory _folder = new("enroll-scale-out");

    private ScaleOutCluster(PostgresServer postgres, MosquittoBroker mosquitto, string database)
    {
        _postgres = postgres;
        Mosquitto = mosquitto;
        Database = database;
    }

    public MosquittoBroker Mosquitto { get; }

    public string Database { get; }

    public EnrollInstance A { get; private set; } = null!;

    public EnrollInstance B { get; private set; } = null!;

    public IReadOnlyList<EnrollInstance> Instances => [A, B];

    /// <summary>A scratch folder for device state, deleted with the cluster.</summary>
    public string Scratch(string name) => _folder.Combine(name);

    public static async Task<ScaleOutCluster> StartAsync(PostgresServer postgres, ITestOutputHelper output)
    {
        var mosquitto = await MosquittoBroker.StartWithDynamicSecurityAsync(ServerUser, ServerPassword);
        var cluster = new ScaleOutCluster(postgres, mosquitto, await postgres.CreateDatabaseAsync("scaleout"));
        try
        {
            await cluster.StartInstancesAsync(output);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task StartInstancesAsync(ITestOutputHelper output)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("the scale-out tests run Debian's Mosquitto and PostgreSQL");
        }

        string[] arguments =
        [
            "--broker", Mosquitto.Endpoint.ToString().TrimEnd('/'), "--broker-username", ServerUser, "--broker-dynsec",
            "--database", Database, "--require-encryption", "--log-level", "Debug",
        ];
        var environment = new Dictionary<string, string>
        {
            ["ENROLL_BROKER_PASSWORD"] = ServerPassword,
            // The key-encryption key every instance is given: the signing and encryption keys are in the registry, sealed
            // under it, so both instances sign, verify and publish the same keys.
            ["ENROLL_KEY_ENCRYPTION_KEY"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
        };
        A = new EnrollInstance("srvA", _folder.Combine("srvA"), arguments, environment, output);
        B = new EnrollInstance("srvB", _folder.Combine("srvB"), arguments, environment, output);
        await A.StartAsync();

        // Every instance answers to the same admin key.
        Directory.CreateDirectory(B.DataDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        CopyOwnerOnly(Path.Combine(A.DataDirectory, "admin.key"), Path.Combine(B.DataDirectory, "admin.key"));

        await B.StartAsync();
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static void CopyOwnerOnly(string from, string to)
    {
        File.Copy(from, to);
        File.SetUnixFileMode(to, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    /// <summary>The instance other than <paramref name="instance"/>.</summary>
    public EnrollInstance Other(EnrollInstance instance) => ReferenceEquals(instance, A) ? B : A;

    /// <summary>Device rows per client ID, read from the database itself.</summary>
    public async Task<Dictionary<string, int>> DevicesPerClientAsync()
    {
        await using var connection = new NpgsqlConnection(Database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT client_id, count(*) FROM devices GROUP BY client_id", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        while (await reader.ReadAsync())
        {
            counts[reader.GetString(0)] = (int)reader.GetInt64(1);
        }

        return counts;
    }

    /// <summary>Stored message rows per (Device ID, message ID), read from the database itself.</summary>
    public async Task<Dictionary<(string DeviceId, string MessageId), int>> StoredMessagesAsync()
    {
        await using var connection = new NpgsqlConnection(Database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT device_id, message_id, count(*) FROM messages GROUP BY device_id, message_id", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var counts = new Dictionary<(string, string), int>();
        while (await reader.ReadAsync())
        {
            counts[(reader.GetString(0), reader.GetString(1))] = (int)reader.GetInt64(2);
        }

        return counts;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var instance in new[] { B, A })
        {
            if (instance is not null)
            {
                await instance.DisposeAsync();
            }
        }

        await Mosquitto.DisposeAsync();
        await _postgres.DropDatabaseAsync(Database);
        _folder.Dispose();
    }
}
