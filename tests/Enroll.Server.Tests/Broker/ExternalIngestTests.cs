using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text;
using Enroll.Protocol.Access;
using Enroll.Server.Broker.External;
using Enroll.Server.Diagnostics;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Broker;

/// <summary>
/// Ingest through a real Mosquitto (the documented ACL, which confines a device to its own topics): device messages are
/// taken by the server's persistent, shared ingest session and acknowledged to the broker only once committed, so every
/// message is stored exactly once, also when the server instance is away while devices keep sending.
/// </summary>
public sealed class ExternalIngestTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string InstanceId = "enroll-test-instance-1";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private MosquittoBroker _mosquitto = null!;
    private readonly TempDirectory _data = new("enroll-server");
    private readonly TempDirectory _states = new();

    public async Task InitializeAsync() =>
        // No password file: Mosquitto takes the user name as given (standing in for the broker's token check), and the
        // ACL's %u patterns confine each device to enroll/v1/devices/{its id}/#.
        _mosquitto = await MosquittoBroker.StartAsync(acl: MosquittoAcl.Render());

    public async Task DisposeAsync()
    {
        await _mosquitto.DisposeAsync();
        _states.Dispose();
        _data.Dispose();
    }

    private Task<TestServer> StartServerAsync() => TestServer.StartAsync(output, o =>
    {
        o.ExternalBroker = _mosquitto.Endpoint;
        o.BrokerPassword = "unchecked-here";
        o.BrokerClientId = InstanceId;
    }, dataDirectory: _data.Path);

    private async Task<(DeviceHarness Device, string DeviceId)> RegisteredDeviceAsync(TestServer server, string clientId, string deviceId)
    {
        var token = await server.CreateTokenAsync();
        var device = DeviceHarness.Create(_mosquitto.Endpoint, clientId, _states.Combine(clientId), token.Token, output, o =>
        {
            o.DesiredDeviceId = deviceId;
            o.MaxAttempts = 50;
        });
        Assert.Equal(deviceId, (await device.Registration.StartAsync()).DeviceId);
        return (device, deviceId);
    }

    private static Task SendAsync(DeviceHarness device, int from, int count) =>
        Task.WhenAll(Enumerable.Range(from, count).Select(i =>
            device.Outbox.SendAsync(i % 2 == 0 ? "telemetry" : "logs/kernel", Encoding.UTF8.GetBytes($"{{\"n\":{i}}}"))));

    private static async Task<IMqttClient> ConnectAsDeviceAsync(Uri broker, string deviceId)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        await client.ConnectAsync(new MqttClientOptionsBuilder()
            .WithTcpServer(broker.Host, broker.Port)
            .WithClientId("raw-" + deviceId)
            .WithCredentials(deviceId, "access-token")
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .Build());
        return client;
    }

    private static MqttApplicationMessage DeviceMessage(string deviceId, string messageId, string payload, string? encoding = null)
    {
        var builder = new MqttApplicationMessageBuilder()
            .WithTopic($"enroll/v1/devices/{deviceId}/messages/telemetry")
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithUserProperty("message_id", Encoding.UTF8.GetBytes(messageId).AsMemory());
        if (encoding is not null)
        {
            builder.WithUserProperty("content_encoding", Encoding.UTF8.GetBytes(encoding).AsMemory());
        }

        return builder.Build();
    }

    [Fact]
    public async Task MessagesSentThroughMosquitto_AreEachStoredOnce()
    {
        await using var server = await StartServerAsync();
        var (device, deviceId) = await RegisteredDeviceAsync(server, "ingest-client-1", "dev-ingest-1");
        await using var _ = device;

        await SendAsync(device, 0, 200);
        await device.StartAgentsAsync();

        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 200, Patience, "200 messages stored");
        var stored = await server.MessagesAsync(deviceId);
        Assert.Equal(200, stored.Select(m => m.MessageId).Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(100, stored.Count(m => m.Stream == "logs/kernel"));
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), n => n == 0, Patience, "the outbox emptied by the broker's acknowledgements");
    }

    [Fact]
    public async Task ServerStoppedWhileTheDeviceKeepsSending_EveryMessageIsStoredExactlyOnceAfterItsRestart()
    {
        var server = await StartServerAsync();
        var (device, deviceId) = await RegisteredDeviceAsync(server, "ingest-client-2", "dev-ingest-2");
        await using var _ = device;
        await device.StartAgentsAsync();
        await SendAsync(device, 0, 50);
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 50, Patience, "the first 50 messages stored");

        await server.DisposeAsync();
        await SendAsync(device, 50, 150);
        // Acknowledged by Mosquitto while no server is there: queued for the instance's persistent ingest session.
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics()), s => s.Depth == 0 && s.Acknowledged >= 200, Patience, "all 200 messages acknowledged by the broker");

        await using var restarted = await StartServerAsync();
        await Eventually.ReturnsAsync(() => restarted.CountMessagesAsync(deviceId), n => n >= 200, Patience, "200 messages stored after the restart");
        var stored = await restarted.MessagesAsync(deviceId);
        Assert.Equal(200, stored.Count);
        Assert.Equal(200, stored.Select(m => m.MessageId).Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public async Task AMessageResentWithTheSameId_IsStoredOnce()
    {
        await using var server = await StartServerAsync();
        using var outcomes = new IngestOutcomes(server);
        using var device = await ConnectAsDeviceAsync(_mosquitto.Endpoint, "dev-resend");

        Assert.True((await device.PublishAsync(DeviceMessage("dev-resend", "m-1", """{"t":1}"""))).IsSuccess);
        Assert.True((await device.PublishAsync(DeviceMessage("dev-resend", "m-1", """{"t":1}"""))).IsSuccess);
        Assert.True((await device.PublishAsync(DeviceMessage("dev-resend", "m-2", """{"t":2}"""))).IsSuccess);

        await Eventually.ReturnsAsync(() => Task.FromResult(outcomes["stored"] + outcomes["duplicate"]), n => n == 3, Patience, "three messages ingested");
        Assert.Equal(1, outcomes["duplicate"]);
        var stored = await server.MessagesAsync("dev-resend");
        Assert.Equal(["m-1", "m-2"], stored.Select(m => m.MessageId).Order(StringComparer.Ordinal));
        Assert.All(stored, m => Assert.Equal("dev-resend", m.DeviceId));
    }

    [Fact]
    public async Task AnInvalidMessage_IsAcknowledgedToTheBrokerAndCounted_NeverRedelivered()
    {
        var server = await StartServerAsync();
        using var outcomes = new IngestOutcomes(server);
        using var device = await ConnectAsDeviceAsync(_mosquitto.Endpoint, "dev-invalid");

        Assert.True((await device.PublishAsync(DeviceMessage("dev-invalid", "bad-1", "not zipped", encoding: "zip"))).IsSuccess);
        await Eventually.ReturnsAsync(() => Task.FromResult(outcomes["invalid"]), n => n == 1, Patience, "the invalid message counted");
        await Eventually.ReturnsAsync(() => Task.FromResult(server.Host.Services.GetRequiredService<ExternalIngest>().InFlight), n => n == 0, Patience, "its acknowledgement sent");
        await server.DisposeAsync();

        // With the instance away, a valid message queues for its session. Resuming that session, Mosquitto resends an
        // unacknowledged message before the queued ones: the first message it gives is the valid one.
        Assert.True((await device.PublishAsync(DeviceMessage("dev-invalid", "good-1", """{"t":1}"""))).IsSuccess);
        var resumed = new MqttClientFactory().CreateMqttClient();
        using var _ = resumed;
        var received = new TaskCompletionSource<MqttApplicationMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        resumed.ApplicationMessageReceivedAsync += e =>
        {
            received.TrySetResult(e.ApplicationMessage);
            return Task.CompletedTask;
        };
        var connected = await resumed.ConnectAsync(new MqttClientOptionsBuilder()
            .WithTcpServer(_mosquitto.Endpoint.Host, _mosquitto.Endpoint.Port)
            .WithClientId(InstanceId + "-ingest")
            .WithCredentials("enroll-server", "unchecked-here")
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(false)
            .WithSessionExpiryInterval(60)
            .Build());

        Assert.True(connected.IsSessionPresent);
        var first = await received.Task.WaitAsync(Patience);
        Assert.Equal("good-1", first.UserProperties!.Single(p => p.Name == "message_id").ReadValueAsString());
        Assert.Equal(0, outcomes["stored"]);
    }

    [Fact]
    public async Task TheTwoConnections_UseTheInstancesClientId_CleanForRequestsAndPersistentForMessages()
    {
        await using var server = await StartServerAsync();
        var ingest = server.Host.Services.GetRequiredService<ExternalIngest>();
        var requests = server.Host.Services.GetRequiredService<Enroll.Server.Broker.ExternalBrokerTransport>();

        Assert.Equal(InstanceId + "-ingest", ingest.ClientId);
        Assert.Equal(InstanceId + "-requests", requests.ClientId);
        var (device, deviceId) = await RegisteredDeviceAsync(server, "ingest-client-5", "dev-ingest-5");
        await using var _ = device;
        Assert.Equal(deviceId, Assert.Single(await server.ListDevicesAsync()).DeviceId);
    }

    [Fact]
    public async Task AMessageWhoseCommitFails_IsNotAcknowledged_AndIsStoredOnceWhenTheRetriedCommitSucceeds()
    {
        var failing = new FailingMessageStore.Switch { Failing = true };
        await using var host = await EnrollServerHost.StartAsync(
            new EnrollServerOptions
            {
                DataDirectory = _data.Path,
                MqttPort = 0,
                HttpPort = 0,
                Bind = "127.0.0.1",
                ExternalBroker = _mosquitto.Endpoint,
                BrokerPassword = "unchecked-here",
                BrokerClientId = InstanceId,
            },
            (EnrollServerBuilder server) => RegistryDecorators.Decorate(server.Services, store => FailingMessageStore.Wrap(store, failing)));
        var ingest = host.Services.GetRequiredService<ExternalIngest>();
        var messages = host.Services.GetRequiredService<Enroll.Server.Registry.IMessageStore>();
        using var device = await ConnectAsDeviceAsync(_mosquitto.Endpoint, "dev-retry");

        Assert.True((await device.PublishAsync(DeviceMessage("dev-retry", "m-1", """{"t":1}"""))).IsSuccess);
        // The commit failed and was tried again (after 1 s); all the while the message is held unacknowledged.
        await Eventually.ReturnsAsync(() => Task.FromResult(failing.Attempts), n => n >= 2, Patience, "the failed commit retried");
        Assert.Equal(1, ingest.InFlight);
        Assert.Equal(0, await messages.CountMessagesAsync("dev-retry"));

        failing.Failing = false;
        await Eventually.ReturnsAsync(() => Task.FromResult(ingest.InFlight), n => n == 0, Patience, "the message committed and acknowledged");
        Assert.Equal(1, await messages.CountMessagesAsync("dev-retry"));
    }

    /// <summary>The <c>enroll.server.messages.ingested</c> counter of one server, by outcome, from creation on.</summary>
    private sealed class IngestOutcomes : IDisposable
    {
        private readonly ConcurrentDictionary<string, long> _byOutcome = new(StringComparer.Ordinal);
        private readonly MeterListener _listener = new();

        public IngestOutcomes(TestServer server)
        {
            var meterFactory = server.Host.Services.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == meterFactory && instrument.Name == ServerInstruments.MessagesIngested)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "outcome" && tag.Value is string outcome)
                    {
                        _byOutcome.AddOrUpdate(outcome, value, (_, total) => total + value);
                    }
                }
            });
            _listener.Start();
        }

        public long this[string outcome] => _byOutcome.GetValueOrDefault(outcome);

        public void Dispose() => _listener.Dispose();
    }
}

/// <summary>A registry whose <c>StoreMessageAsync</c> fails (a database error, not a full disk) while its switch is on.</summary>
public class FailingMessageStore : System.Reflection.DispatchProxy
{
    private Enroll.Server.Registry.IRegistry _inner = null!;
    private Switch _switch = null!;

    internal static Enroll.Server.Registry.IRegistry Wrap(Enroll.Server.Registry.IRegistry inner, Switch failing)
    {
        var proxy = Create<Enroll.Server.Registry.IRegistry, FailingMessageStore>();
        var store = (FailingMessageStore)(object)proxy;
        store._inner = inner;
        store._switch = failing;
        return proxy;
    }

    protected override object? Invoke(System.Reflection.MethodInfo? targetMethod, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(targetMethod);
        if (targetMethod.Name == nameof(Enroll.Server.Registry.IMessageStore.StoreMessageAsync))
        {
            Interlocked.Increment(ref _switch.AttemptCount);
            if (_switch.Failing)
            {
                return Task.FromException<bool>(new InvalidOperationException("the database is unavailable (test)"));
            }
        }

        return RegistryDecorators.Forward(_inner, targetMethod, args);
    }

    public sealed class Switch
    {
        internal int AttemptCount;
        private volatile bool _failing;

        public bool Failing
        {
            get => _failing;
            set => _failing = value;
        }

        public int Attempts => Volatile.Read(ref AttemptCount);
    }
}
