using Enroll.Device;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.ScaleOut;

/// <summary>
/// Two <c>enroll server</c> processes on one Mosquitto (dynamic security) and one PostgreSQL database, nothing mocked:
/// devices (the real device library) register, are approved, refresh and send messages through whichever instance the
/// broker's shared subscriptions give them to, and every one of them ends registered once with every acknowledged
/// message stored once.
/// </summary>
[Collection(ScaleOutGroup.Name)]
[Trait("Category", "ScaleOut")]
public sealed class ScaleOutTests(PostgresServer postgres, ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(40);
    private readonly List<FleetDevice> _devices = [];
    private ScaleOutCluster _cluster = null!;

    public async Task InitializeAsync() => _cluster = await ScaleOutCluster.StartAsync(postgres, output);

    public async Task DisposeAsync()
    {
        foreach (var device in _devices)
        {
            await device.DisposeAsync();
        }

        await _cluster.DisposeAsync();
    }

    private FleetDevice Device(string clientId, string token, int maxAttempts = 10)
    {
        var device = FleetDevice.Create(_cluster, clientId, token, maxAttempts);
        _devices.Add(device);
        return device;
    }

    /// <summary>The instance whose log says it took the request that started <paramref name="operationId"/> (event 9).</summary>
    private EnrollInstance TookOperation(string operationId)
    {
        var took = _cluster.Instances.Where(i => i.Count($"Provisioning operation {operationId} for client") > 0).ToList();
        return Assert.Single(took);
    }

    [Fact]
    public async Task TwoInstances_ServeRegistrationApprovalRefreshAndMessages_BothServe_AndEverythingIsStoredOnce()
    {
        var autoToken = await _cluster.A.CreateTokenAsync(autoApprove: true);
        var approvalToken = await _cluster.B.CreateTokenAsync(autoApprove: false);
        var automatic = Enumerable.Range(0, 16).Select(i => Device($"auto-{i:D2}", autoToken)).ToList();
        var approved = Enumerable.Range(0, 4).Select(i => Device($"approved-{i}", approvalToken)).ToList();

        // Registrations, all at once: the shared subscription spreads them over both instances.
        var registering = automatic.Concat(approved).Select(d => d.RegisterAsync(Patience)).ToList();
        foreach (var device in approved)
        {
            var pending = await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience);
            // Decided through the instance that did NOT take the request: the push reaches the device all the same.
            var decider = _cluster.Other(TookOperation(pending.OperationId!));
            await decider.ApproveAsync(pending.OperationId!);
        }

        await Task.WhenAll(registering);

        // Every device refreshes its Registration Token, through whichever instance gets the request.
        await Task.WhenAll(_devices.Select(d => d.Registration.RefreshRegistrationTokenAsync().WaitAsync(Patience)));

        // Device messages with delivery confirmation (the broker's PUBACK), taken in by both instances' ingest sessions.
        await Task.WhenAll(_devices.Select(d => d.SendAsync(5)));
        await Task.WhenAll(_devices.Select(d => d.DrainedAsync(Patience)));
        var expected = _devices.SelectMany(d => d.Sent.Select(m => (d.DeviceId!, m))).ToHashSet();
        var stored = await Eventually.ReturnsAsync(_cluster.StoredMessagesAsync, s => expected.All(s.ContainsKey), Patience, "every acknowledged message is stored");

        var devices = await _cluster.DevicesPerClientAsync();
        output.WriteLine(
            $"SCALE-OUT two instances: registrations A={_cluster.A.Registrations.Count} B={_cluster.B.Registrations.Count}, " +
            $"refreshes A={_cluster.A.Count("refreshed its Registration Token")} B={_cluster.B.Count("refreshed its Registration Token")}, " +
            $"messages stored A={_cluster.A.MessagesStored} B={_cluster.B.MessagesStored}, devices={devices.Count}, messages={stored.Count}");
        Assert.All(_cluster.Instances, i => Assert.NotEmpty(i.Registrations));
        Assert.All(_cluster.Instances, i => Assert.True(i.Count("refreshed its Registration Token") > 0, $"{i.Name} served no refresh"));
        Assert.All(_cluster.Instances, i => Assert.True(i.MessagesStored > 0, $"{i.Name} ingested no message"));
        Assert.Equal(_devices.Select(d => d.ClientId).Order(), devices.Keys.Order());
        Assert.All(devices, d => Assert.Equal(1, d.Value));
        Assert.Equal(expected.Order(), stored.Keys.Order());
        Assert.All(stored, m => Assert.Equal(1, m.Value));
        Assert.Equal(_devices.Sum(d => d.Sent.Count), _devices.Sum(d => d.Acknowledged));
        Assert.Equal(_cluster.A.MessagesStored + _cluster.B.MessagesStored, stored.Count);

        // Either instance's API reads what the other stored.
        var first = _devices[0];
        Assert.Equal(first.Sent.Order(), (await _cluster.A.ListMessagesAsync(first.DeviceId!)).Select(m => m.MessageId).Order());
        Assert.Equal(first.Sent.Order(), (await _cluster.B.ListMessagesAsync(first.DeviceId!)).Select(m => m.MessageId).Order());
    }
}
