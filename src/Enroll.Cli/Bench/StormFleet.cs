using System.Collections.Concurrent;
using System.Diagnostics;
using Enroll.Device;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Cli.Bench;

/// <summary>The devices of a storm, wherever they run: what <see cref="StormBench"/> watches and reports.</summary>
internal interface IStormFleet : IAsyncDisposable
{
    int Registered { get; }

    int Waiting { get; }

    int Retries { get; }

    int Failed { get; }

    /// <summary>Seconds from the start until each device registered; NaN for one that never did.</summary>
    double[] RegisteredAt { get; }

    /// <summary>Attempts each device made (at least 1).</summary>
    int[] Attempts { get; }

    /// <summary>Starts every device at once and completes when each registered or gave up (or <paramref name="cancellationToken"/> fired).</summary>
    Task RunAsync(Stopwatch clock, CancellationToken cancellationToken);
}

/// <summary>
/// What the devices of a storm are: which server, where their state folders go (<see cref="StormStateRoot"/>), which
/// token, their names and their retry behaviour.
/// </summary>
internal sealed record StormDevices(Uri Broker, string StateRoot, string Token, string Prefix, bool Jitter, int QualityOfService)
{
    public string ClientId(int index) => $"{Prefix}-{index:D6}";
}

/// <summary>
/// Devices of a storm in this process: each a device library <see cref="RegistrationService"/> with its own MQTT
/// connection and state folder (credentials kept in memory: the storm measures the server, not this machine's disk).
/// </summary>
internal sealed class StormFleet : IStormFleet
{
    /// <summary>Rounds and devices per round of <see cref="WarmUpAsync"/>: enough calls for the runtime to recompile what
    /// every device runs (it does so after 30 calls, twice with profile-guided optimisation).</summary>
    private const int WarmUpRounds = 3;

    private const int WarmUpDevices = 64;

    /// <summary>How long a warm-up round waits after its devices: the runtime recompiles hot methods optimised only after
    /// a quiet moment with nothing new to compile (about 100 ms), then in the background.</summary>
    private static readonly TimeSpan WarmUpPause = TimeSpan.FromMilliseconds(400);

    private readonly ServiceProvider[] _devices;
    private readonly ConcurrentDictionary<int, int> _attempts = new();
    private int _registered;
    private int _waiting;
    private int _retries;
    private int _failed;

    /// <summary>Prepares devices <paramref name="first"/> to <paramref name="first"/> + <paramref name="count"/> − 1 of the storm.</summary>
    public StormFleet(StormDevices devices, int first, int count)
    {
        RegisteredAt = new double[count];
        Array.Fill(RegisteredAt, double.NaN);
        _devices = Enumerable.Range(0, count).Select(i => Create(devices, i, devices.ClientId(first + i))).ToArray();
    }

    /// <summary>
    /// Registers a few rounds of extra devices (client IDs <c>{prefix}-warm{tag}r{round}-…</c>; as many as the storm's
    /// <paramref name="stormDevices"/> in this process, up to 64 a round) with a pause after each,
    /// so that this process has compiled the device library's start, request and verification code, and the runtime has
    /// recompiled the hot part optimised, before its storm devices start: the storm measures the server, not the load
    /// generator's first run of that code.
    /// </summary>
    public static async Task WarmUpAsync(StormDevices devices, string tag, int stormDevices, CancellationToken cancellationToken)
    {
        var perRound = Math.Min(WarmUpDevices, stormDevices);
        for (var round = 0; round < WarmUpRounds; round++)
        {
            var warm = new StormFleet(devices with { Prefix = $"{devices.Prefix}-warm{tag}r{round}" }, 0, perRound);
            await using (warm)
            {
                await warm.RunAsync(Stopwatch.StartNew(), cancellationToken);
                if (warm.Failed > 0)
                {
                    throw new InvalidOperationException($"{warm.Failed} of {perRound} warm-up devices did not register: the server is not taking registrations");
                }
            }

            await Task.Delay(WarmUpPause, cancellationToken);
        }
    }

    /// <summary>What <see cref="WarmUpAsync"/> registers, for the report.</summary>
    public static string WarmUpDescription => $"{WarmUpRounds} rounds of up to {WarmUpDevices} warm-up devices";

    public int Registered => Volatile.Read(ref _registered);

    public int Waiting => Volatile.Read(ref _waiting);

    public int Retries => Volatile.Read(ref _retries);

    public int Failed => Volatile.Read(ref _failed);

    public double[] RegisteredAt { get; }

    public int[] Attempts => Enumerable.Range(0, _devices.Length).Select(i => Math.Max(1, _attempts.GetValueOrDefault(i))).ToArray();

    public Task RunAsync(Stopwatch clock, CancellationToken cancellationToken) =>
        Task.WhenAll(_devices.Select((device, index) => Task.Run(() => RegisterAsync(device, index, clock, cancellationToken), CancellationToken.None)));

    /// <summary>Stops the devices, 64 at a time (each closes its connection).</summary>
    public async ValueTask DisposeAsync()
    {
        using var gate = new SemaphoreSlim(64);
        await Task.WhenAll(_devices.Select(async device =>
        {
            await gate.WaitAsync();
            try
            {
                await device.DisposeAsync();
            }
            finally
            {
                gate.Release();
            }
        }));
    }

    private ServiceProvider Create(StormDevices devices, int index, string clientId)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<ICredentialStore>(new MemoryCredentialStore());
        services.AddEnrollDevice(o =>
        {
            o.Broker = devices.Broker;
            o.ClientId = clientId;
            o.ProvisioningToken = devices.Token;
            o.StatePath = Path.Combine(devices.StateRoot, clientId);
            o.SendMetadata = false;
            o.UseJitter = devices.Jitter;
            o.QualityOfService = devices.QualityOfService;
            o.MaxAttempts = 10_000;
        });
        var provider = services.BuildServiceProvider();
        var registration = provider.GetRequiredService<RegistrationService>();
        registration.StatusChanged += (_, e) => Observe(index, e);
        return provider;
    }

    private async Task RegisterAsync(ServiceProvider device, int index, Stopwatch clock, CancellationToken cancellationToken)
    {
        try
        {
            await device.GetRequiredService<RegistrationService>().StartAsync(cancellationToken);
            RegisteredAt[index] = clock.Elapsed.TotalSeconds;
            Interlocked.Increment(ref _registered);
        }
        catch (Exception ex) when (ex is EnrollException or OperationCanceledException)
        {
            Interlocked.Increment(ref _failed);
        }
    }

    private void Observe(int index, DeviceStatusChangedEventArgs e)
    {
        if (e.Current.State == DeviceState.WaitingToRetry && e.Previous.State != DeviceState.WaitingToRetry)
        {
            Interlocked.Increment(ref _waiting);
        }
        else if (e.Previous.State == DeviceState.WaitingToRetry && e.Current.State != DeviceState.WaitingToRetry)
        {
            Interlocked.Decrement(ref _waiting);
        }

        if (e.Current.State == DeviceState.Registering && e.Current.Attempt > 0)
        {
            var previous = _attempts.GetValueOrDefault(index);
            if (e.Current.Attempt > previous)
            {
                _attempts[index] = e.Current.Attempt;
                if (e.Current.Attempt > 1)
                {
                    Interlocked.Increment(ref _retries);
                }
            }
        }
    }

    /// <summary>Device state kept in memory: the storm measures the server, not this machine's disk.</summary>
    private sealed class MemoryCredentialStore : ICredentialStore
    {
        private DeviceCredentials? _credentials;

        public ValueTask<DeviceCredentials?> LoadAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(_credentials);

        public ValueTask SaveAsync(DeviceCredentials credentials, CancellationToken cancellationToken = default)
        {
            _credentials = credentials;
            return ValueTask.CompletedTask;
        }

        public ValueTask ClearAsync(CancellationToken cancellationToken = default)
        {
            _credentials = null;
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>
/// Where a storm's devices keep their state folders: on a memory file system (<c>/dev/shm</c>) where there is one, else
/// under the bench's scratch folder, removed with it. A device creates its state folder, lock and owner note when it
/// starts; 10,000 of them at once on this machine's ext4 disk took a third of the load generator's CPU (the inode
/// allocator steps over the inodes the previous run deleted), which the storm would have charged to the server. A folder
/// on the memory file system is named after the process that made it, and a storm removes those of processes that are
/// gone (killed before they could clean up), which would otherwise hold memory until the machine restarts.
/// </summary>
internal sealed class StormStateRoot : IDisposable
{
    private const string MemoryFileSystem = "/dev/shm";
    private const string Prefix = "enroll-storm-";

    private StormStateRoot(string path, bool inMemory)
    {
        Path = path;
        InMemory = inMemory;
    }

    public string Path { get; }

    /// <summary>True when the folders are on a memory file system.</summary>
    public bool InMemory { get; }

    public static StormStateRoot Create(string scratch)
    {
        if (OperatingSystem.IsLinux() && Directory.Exists(MemoryFileSystem))
        {
            RemoveAbandoned(MemoryFileSystem);
            var path = System.IO.Path.Combine(MemoryFileSystem, $"{Prefix}{Environment.ProcessId}-{Guid.NewGuid():N}");
            try
            {
                Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                return new StormStateRoot(path, inMemory: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Not writable here: the scratch folder it is.
            }
        }

        return new StormStateRoot(Directory.CreateDirectory(System.IO.Path.Combine(scratch, "storm")).FullName, inMemory: false);
    }

    /// <summary>
    /// Removes the state folders in <paramref name="folder"/> whose process is no longer running (<c>/proc/{pid}</c> is
    /// gone); folders of running processes, and folders not named after one, stay. Best effort, like the removal of a
    /// storm's own folder: a folder that cannot be listed or removed stays, and the storm goes on.
    /// </summary>
    internal static void RemoveAbandoned(string folder)
    {
        string[] candidates;
        try
        {
            candidates = Directory.GetDirectories(folder, Prefix + "*");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return;
        }

        foreach (var path in candidates)
        {
            var name = System.IO.Path.GetFileName(path).AsSpan(Prefix.Length);
            var dash = name.IndexOf('-');
            if (dash > 0 && int.TryParse(name[..dash], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid)
                && !Directory.Exists($"/proc/{pid}"))
            {
                Delete(path);
            }
        }
    }

    public void Dispose() => Delete(Path);

    private static void Delete(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }
}
