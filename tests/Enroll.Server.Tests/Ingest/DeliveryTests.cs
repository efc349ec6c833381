using System.Text;
using System.Text.Json;
using Enroll.Device;
using Enroll.Server.Broker;
using Enroll.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Ingest;

public sealed class DeliveryTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static async Task<(DeviceHarness Device, string DeviceId)> RegisteredDeviceAsync(TestServer server, TempDirectory state, string clientId, ITestOutputHelper output, Action<EnrollDeviceOptions>? configure = null)
    {
        var token = await server.CreateTokenAsync();
        var device = DeviceHarness.Create(server.MqttEndpoint, clientId, state.Path, token.Token, output, o =>
        {
            o.MaxAttempts = 50;
            configure?.Invoke(o);
        });
        var identity = await device.Registration.StartAsync();
        return (device, identity.DeviceId);
    }

    /// <summary>The payload of the <paramref name="n"/>th test message; <see cref="N"/> reads it back.</summary>
    private static byte[] Numbered(int n) => Encoding.UTF8.GetBytes($"{{\"n\":{n}}}");

    private static int N(Enroll.Server.IngestedMessage message)
    {
        using var json = JsonDocument.Parse(message.Payload);
        return json.RootElement.GetProperty("n").GetInt32();
    }

    [Fact]
    public async Task Messages_ArriveOnceEach_InOrderPerStream_WithTheirProperties()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state, "order-1", output);
        await using var _ = device;
        for (var i = 0; i < 300; i++)
        {
            await device.Outbox.SendAsync(i % 2 == 0 ? "telemetry" : "logs/kernel", Numbered(i), new MessageProperties
            {
                ContentType = "application/json",
                Custom = new Dictionary<string, string> { ["unit"] = "celsius" },
            });
        }

        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 300, Patience, "300 messages stored");
        var stored = await server.MessagesAsync(deviceId);

        Assert.Equal(300, stored.Select(m => m.MessageId).Distinct().Count());
        foreach (var stream in new[] { "telemetry", "logs/kernel" })
        {
            var order = stored.Where(m => m.Stream == stream).Select(N).ToList();
            Assert.Equal(order.Order(), order);
        }

        Assert.All(stored, m => Assert.Equal("celsius", m.Properties["unit"]));
        Assert.All(stored, m => Assert.Equal("application/json", m.ContentType));
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "acknowledged rows deleted");
        var counts = DeviceOutbox.ReadStatistics(state.Path)!;
        Assert.Equal(300, counts.Acknowledged);
        Assert.Equal(300, counts.Sent);
    }

    [Fact]
    public async Task CompressedMessages_AreStoredDecompressed()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state, "gzip-1", output, o => o.CompressAbove = 256);
        await using var _ = device;
        var original = Encoding.UTF8.GetBytes("{\"n\":0,\"log\":\"" + string.Concat(Enumerable.Repeat("kernel: all quiet; ", 400)) + "\"}");

        await device.Outbox.SendAsync("logs", original);
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 1, Patience, "the message stored");

        Assert.Equal(original, (await server.MessagesAsync(deviceId)).Single().Payload.ToArray());
    }

    [Fact]
    public async Task PoisonRows_AreQuarantined_AndTheRowsBehindThemAreDelivered()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state, "poison-1", output);
        await using var _ = device;
        await device.Outbox.SendAsync("s", """{"n":0}"""u8.ToArray());
        using (var connection = new SqliteConnection($"Data Source={state.Combine("outbox.db")};Pooling=false"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = """
                INSERT INTO messages (message_id, device_id, stream, created_at, payload, size, schema_version) VALUES ('01m8000000000000000000000b', NULL, 's', 0, x'7b7d', 2, 99);
                INSERT INTO messages (message_id, device_id, stream, created_at, payload, size, schema_version) VALUES ('01m8000000000000000000000c', NULL, 's', 0, x'7b', 40, 1);
                """;
            command.ExecuteNonQuery();
        }

        await device.Outbox.SendAsync("s", """{"n":3}"""u8.ToArray());
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 2, Patience, "both good messages stored");

        Assert.Equal([0, 3], (await server.MessagesAsync(deviceId)).Select(N));
        Assert.Equal(2, device.Outbox.GetStatistics().Quarantined);
    }

    [Fact]
    public async Task BrokerRestart_WhileDraining_LosesNothingAndStoresEachOnce()
    {
        using var data = new TempDirectory("enroll-server");
        var server = await TestServer.StartAsync(output, dataDirectory: data.Path);
        var port = server.MqttPort;
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state, "restart-1", output, o =>
        {
            o.InitialBackoff = TimeSpan.FromMilliseconds(50);
            o.MaxBackoff = TimeSpan.FromMilliseconds(500);
        });
        await using var _ = device;
        await Task.WhenAll(Enumerable.Range(0, 3000).Select(i => device.Outbox.SendAsync("s", Numbered(i))));

        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n >= 300, Patience, "delivery under way");
        await server.DisposeAsync();
        await using var again = await TestServer.StartAsync(output, dataDirectory: data.Path, mqttPort: port);
        await Eventually.ReturnsAsync(() => again.CountMessagesAsync(deviceId), n => n >= 3000, Patience, "all 3000 stored");

        var stored = await again.MessagesAsync(deviceId);
        Assert.Equal(Enumerable.Range(0, 3000), stored.Select(N).Order());
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "the outbox drained");
    }

    [Fact]
    public async Task ConnectionReset_WhileDraining_LosesNothingAndStoresEachOnce()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state, "reset-1", output, o =>
        {
            o.InitialBackoff = TimeSpan.FromMilliseconds(50);
            o.MaxBackoff = TimeSpan.FromMilliseconds(500);
        });
        await using var _ = device;
        await Task.WhenAll(Enumerable.Range(0, 3000).Select(i => device.Outbox.SendAsync("s", Numbered(i))));

        await device.StartAgentsAsync();
        var broker = server.Host.Services.GetRequiredService<EmbeddedBroker>().Server;
        for (var reset = 1; reset <= 3; reset++)
        {
            var target = reset * 600;
            await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n >= target, Patience, $"{target} stored");
            await MQTTnet.Server.MqttServerExtensions.DisconnectClientAsync(broker, "reset-1", MQTTnet.Protocol.MqttDisconnectReasonCode.UnspecifiedError);
        }

        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n >= 3000, Patience, "all 3000 stored");
        Assert.Equal(Enumerable.Range(0, 3000), (await server.MessagesAsync(deviceId)).Select(N).Order());

        // Each message is acknowledged once; what was in flight at a reset went out again and counts as sent again.
        var counts = await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics()), c => c.Acknowledged == 3000, Patience, "3000 acknowledged");
        Assert.InRange(counts.Sent, 3000, 3000 + (3 * 64 * 4));
    }

    [Fact]
    public async Task MessagesStoredWhileDraining_ArriveOnceEach_InOrder_AndNoneIsSentTwice()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();

        // A small window: the publisher reads 16 rows at a time, and reads the next 16 while a full batch goes out.
        var (device, deviceId) = await RegisteredDeviceAsync(server, state, "ahead-1", output, o => o.PublishWindow = 4);
        await using var _ = device;
        for (var i = 0; i < 500; i++)
        {
            await device.Outbox.SendAsync("telemetry", Numbered(i));
        }

        await device.StartAgentsAsync();
        for (var i = 500; i < 1000; i++)
        {
            await device.Outbox.SendAsync("telemetry", Numbered(i));
        }

        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n >= 1000, Patience, "1000 messages stored");
        var stored = await server.MessagesAsync(deviceId);
        Assert.Equal(Enumerable.Range(0, 1000), stored.Select(N));
        var counts = await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics()), c => c.Acknowledged == 1000, Patience, "1000 acknowledged");
        Assert.Equal(1000, counts.Sent);
    }

    [Fact]
    public async Task ResentMessages_AreStoredOnce_AndOtherDevicesTopicsAreRefused()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state, "dup-1", output);
        var access = (await device.Store.LoadAsync())!.AccessToken!;
        await device.DisposeAsync();
        await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "dup-1", deviceId, access);

        for (var i = 0; i < 3; i++)
        {
            var message = new MqttApplicationMessageBuilder().WithTopic($"enroll/v1/devices/{deviceId}/messages/s").WithPayload("""{"n":7}""")
                .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).WithUserProperty("message_id", "01m8000000000000000000000z"u8.ToArray().AsMemory()).Build();
            Assert.True((await client.Client.PublishAsync(message)).IsSuccess);
        }

        var corrupt = new MqttApplicationMessageBuilder().WithTopic($"enroll/v1/devices/{deviceId}/messages/s").WithPayload("not gzip")
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).WithUserProperty("message_id", "01m8000000000000000000000y"u8.ToArray().AsMemory()).WithUserProperty("content_encoding", "gzip"u8.ToArray().AsMemory()).Build();
        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, (await client.Client.PublishAsync(corrupt)).ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await client.PublishAsync("enroll/v1/devices/dev_someone_else/messages/s", "{}")).ReasonCode);
        Assert.Equal(1, await server.CountMessagesAsync());
    }
}
