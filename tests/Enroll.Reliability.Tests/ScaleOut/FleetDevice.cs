using Enroll.Device;
using Enroll.Testing;

namespace Enroll.Reliability.Tests.ScaleOut;

/// <summary>
/// A device of a test fleet: the real device library in-process (encrypting its requests, as the cluster requires),
/// with what the test needs to count — how many attempts its registration took, whether it was in flight at a given
/// moment, and the IDs of the messages it sent.
/// </summary>
internal sealed class FleetDevice : IAsyncDisposable
{
    private readonly List<string> _sent = [];
    private int _maxAttempt;
    private int _waitedToRetry;

    private FleetDevice(DeviceHarness harness, string clientId)
    {
        Harness = harness;
        ClientId = clientId;
        harness.Registration.StatusChanged += (_, e) =>
        {
            InterlockedMax(ref _maxAttempt, e.Current.Attempt);
            if (e.Current.State == DeviceState.WaitingToRetry)
            {
                Interlocked.Increment(ref _waitedToRetry);
            }
        };
    }

    public DeviceHarness Harness { get; }

    public string ClientId { get; }

    public RegistrationService Registration => Harness.Registration;

    /// <summary>The Device ID, once registered.</summary>
    public string? DeviceId { get; private set; }

    /// <summary>True when the registration took more than one attempt (an attempt timed out or failed, and it retried).</summary>
    public bool Retried => Volatile.Read(ref _maxAttempt) > 1 || Volatile.Read(ref _waitedToRetry) > 0;

    /// <summary>True while a registration request is out and unanswered (or waiting to be sent again).</summary>
    public bool InFlight => Registration.Status.State is DeviceState.Connecting or DeviceState.Registering or DeviceState.WaitingToRetry;

    /// <summary>True while a registration request is out and unanswered (not connecting, not waiting to retry).</summary>
    public bool Registering => Registration.Status.State is DeviceState.Registering;

    public IReadOnlyList<string> Sent
    {
        get
        {
            lock (_sent)
            {
                return [.. _sent];
            }
        }
    }

    public static FleetDevice Create(ScaleOutCluster cluster, string clientId, string provisioningToken, int maxAttempts = 10, Xunit.Abstractions.ITestOutputHelper? output = null) =>
        new(DeviceHarness.Create(cluster.Mosquitto.Endpoint, clientId, cluster.Scratch(clientId), provisioningToken, output, o =>
        {
            o.EncryptRequests = true;
            o.MaxAttempts = maxAttempts;
        }), clientId);

    /// <summary>Registers (waiting through approval, if the token needs one) and returns the Device ID.</summary>
    public async Task<string> RegisterAsync(TimeSpan timeout)
    {
        var identity = await Registration.StartAsync().WaitAsync(timeout);
        DeviceId = identity.DeviceId;
        return DeviceId;
    }

    /// <summary>Puts <paramref name="count"/> messages in the outbox and starts the publisher, which sends them to the broker.</summary>
    public async Task SendAsync(int count)
    {
        for (var i = 0; i < count; i++)
        {
            var id = await Harness.Outbox.SendAsync("telemetry", System.Text.Encoding.UTF8.GetBytes($$"""{"client":"{{ClientId}}","n":{{i}}}"""));
            lock (_sent)
            {
                _sent.Add(id);
            }
        }

        await Harness.StartAgentsAsync();
    }

    /// <summary>Messages the broker acknowledged to this device (PUBACK), from the outbox's own statistics.</summary>
    public long Acknowledged => Harness.Outbox.GetStatistics().Acknowledged;

    /// <summary>Waits until the broker acknowledged everything in the outbox.</summary>
    public Task DrainedAsync(TimeSpan timeout) =>
        Eventually.ReturnsAsync(() => Task.FromResult(Harness.Outbox.GetStatistics()), s => s.Depth == 0, timeout, $"{ClientId}'s outbox drained");

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }

    public ValueTask DisposeAsync() => Harness.DisposeAsync();
}
