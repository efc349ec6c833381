using System.Buffers;
using System.Net.Http.Json;
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

    private FleetDevice Device(string clientId, string token, int maxAttempts = 10, ITestOutputHelper? deviceOutput = null)
    {
        var device = FleetDevice.Create(_cluster, clientId, token, maxAttempts, deviceOutput);
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

    [Fact]
    public async Task SigkillOfOneInstanceUnderLoad_InFlightRequestsRetryOnTheOther_NothingIsLostOrDuplicated_AndItsQueuedMessagesAreStoredAfterRestart()
    {
        const int Fleet = 48;
        const int MessagesEach = 5;
        var token = await _cluster.A.CreateTokenAsync(autoApprove: true);
        var fleet = Enumerable.Range(0, Fleet).Select(i => Device($"fleet-{i:D2}", token, maxAttempts: 20)).ToList();
        var registered = 0;
        async Task<bool> RunAsync(FleetDevice device)
        {
            try
            {
                await device.RegisterAsync(Patience);
            }
            catch (Exception ex) when (ex is EnrollException or TimeoutException)
            {
                output.WriteLine($"{device.ClientId} did not register: {ex.Message}");
                return false;
            }

            Interlocked.Increment(ref registered);
            await device.SendAsync(MessagesEach);
            await device.DrainedAsync(Patience);
            return true;
        }

        // Continuous load, below what the two instances serve on this machine (a burst beyond it makes devices retry for
        // want of capacity, which is not what this test counts): a device starts every 120 ms, registers, then sends.
        var running = new List<Task<bool>>();
        var launching = Task.Run(async () =>
        {
            using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(120));
            foreach (var device in fleet)
            {
                lock (running)
                {
                    running.Add(Task.Run(() => RunAsync(device)));
                }

                await pace.WaitForNextTickAsync();
            }
        });

        // Mid-load, A hangs (SIGSTOP) and then dies (SIGKILL): the requests the broker handed it while it hung are in
        // flight at the kill and are never answered by it. A third of the fleet is registered first, so both served.
        await Eventually.ReturnsAsync(() => Task.FromResult(Volatile.Read(ref registered)), n => n >= Fleet / 3, Patience, "a third of the fleet registered");
        await _cluster.A.FreezeAsync();
        // A request B serves is answered in milliseconds; one still unanswered in two samples in a row went to the hung A
        // (a device merely connecting was counted before, and the kill then sometimes cut none off).
        var previous = new HashSet<string>(StringComparer.Ordinal);
        var (_, inFlightAtKill, heldByA) = await Eventually.ReturnsAsync(
            () =>
            {
                var registering = fleet.Where(d => d.Registering).Select(d => d.ClientId).ToHashSet(StringComparer.Ordinal);
                var held = registering.Where(previous.Contains).ToList();
                previous = registering;
                return Task.FromResult((Registered: Volatile.Read(ref registered), InFlight: fleet.Where(d => d.InFlight).Select(d => d.ClientId).ToList(), HeldByA: held));
            },
            s => s.InFlight.Count >= 3 && s.HeldByA.Count >= 1,
            Patience,
            "requests in flight while A hangs, at least one of them held by A");
        output.WriteLine($"requests held by the hung A at the kill: {heldByA.Count}");
        await _cluster.A.KillAsync();
        var storedByABeforeKill = _cluster.A.MessagesStored;

        await launching;
        Task<bool>[] all;
        lock (running)
        {
            all = [.. running];
        }

        var outcomes = await Task.WhenAll(all).WaitAsync(TimeSpan.FromSeconds(90));

        // Everything the devices saw acknowledged is at the broker by now; half of what came after the kill is queued
        // for A's persistent ingest session, which gets it when A is back on the same data folder and client ID.
        await _cluster.A.StartAsync();
        var expected = fleet.SelectMany(d => d.Sent.Select(m => (d.DeviceId ?? "-", m))).ToHashSet();
        var stored = await Eventually.ReturnsAsync(_cluster.StoredMessagesAsync, s => expected.All(s.ContainsKey), Patience, "every acknowledged message is stored");
        var devices = await _cluster.DevicesPerClientAsync();

        var lost = outcomes.Count(ok => !ok);
        var retried = fleet.Count(d => d.Retried);
        var duplicates = devices.Values.Count(n => n > 1);
        var acknowledged = fleet.Sum(d => d.Acknowledged);
        var storedOnce = expected.Count(m => stored.TryGetValue(m, out var n) && n == 1);
        var storedByAAfterRestart = _cluster.A.MessagesStored - storedByABeforeKill;
        output.WriteLine(
            $"FAILOVER counts: devices {Fleet}, requests in flight at the kill {inFlightAtKill.Count}, retried {retried} " +
            $"({fleet.Count(d => d.Retried && inFlightAtKill.Contains(d.ClientId))} of those in flight), lost {lost}, duplicate devices {duplicates}; " +
            $"messages acknowledged {acknowledged}, stored {storedOnce} (exactly once), stored by A after its restart {storedByAAfterRestart}, " +
            $"redeliveries de-duplicated {_cluster.A.MessagesDuplicate + _cluster.B.MessagesDuplicate}; " +
            $"registrations served A {_cluster.A.Registrations.Count} B {_cluster.B.Registrations.Count}");

        Assert.NotEmpty(inFlightAtKill);
        Assert.True(fleet.Any(d => d.Retried && inFlightAtKill.Contains(d.ClientId)), "no request in flight at the kill had to be retried: the kill did not cut any off");
        Assert.Equal(0, lost);
        Assert.Equal(0, duplicates);
        Assert.Equal(fleet.Select(d => d.ClientId).Order(), devices.Keys.Order());
        Assert.Equal(Fleet * MessagesEach, acknowledged);
        Assert.Equal(acknowledged, expected.Count);
        Assert.Equal(expected.Count, storedOnce);
        Assert.Equal(expected.Order(), stored.Keys.Order());
        Assert.True(storedByAAfterRestart > 0, "A's persistent ingest session was given nothing queued while it was away");
        Assert.All(_cluster.Instances, i => Assert.NotEmpty(i.Registrations));
    }

    [Fact]
    public async Task ADeviceRevokedThroughInstanceA_IsDroppedByMosquittoAndRefused_WhileInstanceBKeepsServing()
    {
        var token = await _cluster.A.CreateTokenAsync(autoApprove: true);
        var first = Enumerable.Range(0, 4).Select(i => Device($"revoke-{i}", token)).ToList();
        await Task.WhenAll(first.Select(d => d.RegisterAsync(Patience)));

        // The device to revoke is one whose registration B served: the decision through A must still reach Mosquitto.
        var victim = first.FirstOrDefault(d => _cluster.B.RegistrationsOf(d.ClientId) > 0) ?? first[0];
        var credentials = (await victim.Harness.Store.LoadAsync())!;
        _devices.Remove(victim);
        await victim.DisposeAsync();
        await using var session = await RawMqttClient.ConnectAsync(_cluster.Mosquitto.Endpoint, credentials.ClientId, credentials.DeviceId, credentials.AccessToken);
        Assert.True(session.Client.IsConnected);

        var revoked = await _cluster.A.RevokeDeviceAsync(credentials.DeviceId!);

        Assert.Equal("disconnected", revoked.Disconnect);
        await Eventually.ReturnsAsync(() => Task.FromResult(session.Client.IsConnected), connected => !connected, TimeSpan.FromSeconds(5), "Mosquitto dropped the revoked device");
        Assert.Equal(MQTTnet.MqttClientConnectResultCode.NotAuthorized,
            await RawMqttClient.TryConnectAsync(_cluster.Mosquitto.Endpoint, credentials.ClientId, credentials.DeviceId, credentials.AccessToken));

        // Both instances keep serving: new devices register, through B among others.
        var servedByB = _cluster.B.Registrations.Count;
        var later = Enumerable.Range(0, 4).Select(i => Device($"after-revoke-{i}", token)).ToList();
        await Task.WhenAll(later.Select(d => d.RegisterAsync(Patience)));
        await Eventually.ReturnsAsync(() => Task.FromResult(_cluster.B.Registrations.Count), n => n > servedByB, Patience, "B served one of the registrations after the revocation");
        Assert.Equal("revoked", (await _cluster.B.Http.GetFromJsonAsync($"/api/devices/{credentials.DeviceId}", Enroll.Protocol.Admin.AdminJsonContext.Default.DeviceInfo))!.Status);
    }

    [Fact]
    public async Task OneClientsRegistrationsPublishedAtOnceOverSeveralConnections_ReachBothInstances_AndMakeOneDevice()
    {
        const int Racers = 4; // below the client's failure limit (5): the limiter reserves one per credential check in flight
        var token = await _cluster.A.CreateTokenAsync(autoApprove: true);
        var keys = (await _cluster.A.Http.GetFromJsonAsync("/.well-known/jwks.json", Enroll.Protocol.Admin.AdminJsonContext.Default.ServerKeySet))!;
        var encryption = keys.Keys.First(k => k.Use == "enc");
        using var serverKey = System.Security.Cryptography.ECDiffieHellman.Create(new System.Security.Cryptography.ECParameters
        {
            Curve = System.Security.Cryptography.ECCurve.NamedCurves.nistP256,
            Q = new System.Security.Cryptography.ECPoint { X = System.Buffers.Text.Base64Url.DecodeFromChars(encryption.X), Y = System.Buffers.Text.Base64Url.DecodeFromChars(encryption.Y) },
        });

        var replies = Enroll.Protocol.Topics.EnrollTopics.ClientResponses("racer");
        await using var listener = await RawMqttClient.ConnectAsync(_cluster.Mosquitto.Endpoint, "racer-listener");
        Assert.Equal(MQTTnet.MqttClientSubscribeResultCode.GrantedQoS1, await listener.SubscribeAsync(replies));
        var connections = new List<RawMqttClient>();
        try
        {
            for (var i = 0; i < Racers; i++)
            {
                connections.Add(await RawMqttClient.ConnectAsync(_cluster.Mosquitto.Endpoint, $"racer-connection-{i}"));
            }

            var responseKeys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            var requests = connections.Select((connection, i) =>
            {
                var plaintext = System.Text.Encoding.UTF8.GetBytes($$"""{"client_id":"racer","provisioning_token":"{{token}}"}""");
                var sealedRequest = Enroll.Protocol.Encryption.JweEnvelope.SealRequest(plaintext, serverKey, encryption.Kid);
                var correlation = $"race-{i}";
                responseKeys[correlation] = sealedRequest.ResponseKey;
                var message = new MQTTnet.MqttApplicationMessageBuilder()
                    .WithTopic(Enroll.Protocol.Topics.EnrollTopics.Register)
                    .WithPayload(System.Text.Encoding.ASCII.GetBytes(sealedRequest.Compact))
                    .WithContentType(Enroll.Protocol.Encryption.JweEnvelope.ContentType)
                    .WithResponseTopic(replies)
                    .WithCorrelationData(System.Text.Encoding.UTF8.GetBytes(correlation))
                    .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
                    .Build();
                return connection.Client.PublishAsync(message);
            }).ToList();
            Assert.All(await Task.WhenAll(requests), r => Assert.True(r.IsSuccess, r.ReasonString));

            var deviceIds = new List<string>();
            for (var i = 0; i < Racers; i++)
            {
                var answer = await listener.ReceiveAsync(Patience);
                var key = responseKeys[System.Text.Encoding.UTF8.GetString(answer.CorrelationData)];
                Assert.True(Enroll.Protocol.Encryption.JweEnvelope.TryOpenResponse(answer.Payload.ToArray(), key, out var opened, out var why), why);
                using var body = System.Text.Json.JsonDocument.Parse(opened);
                Assert.False(body.RootElement.TryGetProperty("error", out _), body.RootElement.GetRawText());
                deviceIds.Add(body.RootElement.GetProperty("device_id").GetString()!);
            }

            Assert.Single(deviceIds.Distinct());
            Assert.Equal(1, (await _cluster.DevicesPerClientAsync())["racer"]);
            // Each instance logs what it took (its log may trail its answer by a moment).
            await Eventually.ReturnsAsync(() => Task.FromResult(_cluster.Instances.Sum(i => i.RegistrationsOf("racer"))), n => n == Racers, Patience, "both instances logged the registrations they took");
            Assert.All(_cluster.Instances, i => Assert.True(i.RegistrationsOf("racer") > 0, $"{i.Name} took none of the racing registrations"));
        }
        finally
        {
            foreach (var connection in connections)
            {
                await connection.DisposeAsync();
            }
        }
    }
}
