using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Enroll.Device;
using Enroll.Protocol.Transfers;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Protocol;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.EndToEnd;

/// <summary>
/// Large messages and files between the device library and a real server through its embedded broker (issue 14): what is
/// stored is what was sent, one message or one file; what the server refuses for good reaches the device once, with the
/// reason, and is not sent again; what a device leaves unfinished expires with its staged bytes.
/// </summary>
public sealed class LargeTransferEndToEndTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _states = new("enroll-e2e-files");
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
    }

    [Fact]
    public async Task FiveMebibyteMessage_IsSentAsChunks_AndStoredAsOneMessageIdenticalToWhatWasSent()
    {
        var probe = TransferProbe.Attach(_server);
        await using var device = await StartDeviceAsync(_server, "e2e-big-message");
        var payload = RandomNumberGenerator.GetBytes(5 * 1024 * 1024);

        var messageId = await device.Outbox.SendAsync("captures", payload, new MessageProperties { ContentType = "application/octet-stream" });
        var stored = await Eventually.ReturnsAsync(() => _server.MessagesAsync(), m => m.Count > 0, TimeSpan.FromSeconds(60), "the 5 MiB message is stored");

        var message = Assert.Single(stored);
        Assert.Equal(messageId, message.MessageId);
        Assert.Equal("captures", message.Stream);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(message.Payload.Span));
        Assert.Equal("application/octet-stream", message.ContentType);
        Assert.Equal(FileChunks(payload.Length), probe.Publishes.Count);
    }

    [Fact]
    public async Task MessageOverTheMaximum_IsRefusedAtSendAsync_NamingTheOption_AndNothingIsStoredOrSent()
    {
        var probe = TransferProbe.Attach(_server);
        await using var device = await StartDeviceAsync(_server, "e2e-too-big");

        // Random bytes: compression (applied before the limit) cannot shrink them under it.
        var payload = RandomNumberGenerator.GetBytes((int)TransferLimits.DefaultMaxMessageBytes + 1);

        var refused = await Assert.ThrowsAsync<MessageTooLargeException>(() => device.Outbox.SendAsync("captures", payload));

        Assert.Contains(nameof(EnrollDeviceOptions.MaxMessageBytes), refused.Message, StringComparison.Ordinal);
        Assert.Equal(0, device.Outbox.GetStatistics().Depth);
        Assert.Empty(probe.Publishes);
        Assert.Equal(0, await _server.CountMessagesAsync());
    }

    [Fact]
    public async Task CorruptedChunk_FailsTheHashCheck_TheDeviceIsToldWhyAndQuarantinesTheTransfer_AndSendsNothingAgain()
    {
        const int chunkBytes = 16 * 1024;
        var probe = TransferProbe.Attach(_server);
        var content = RandomNumberGenerator.GetBytes(20 * chunkBytes);
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(content));
        var token = (await _server.CreateTokenAsync()).Token;
        string deviceId;
        string transferId;
        string accessToken;
        await using (var storing = DeviceHarness.Create(_server.MqttEndpoint, "e2e-corrupt", _states.Combine("e2e-corrupt"), token, output, o => o.ChunkBytes = chunkBytes))
        {
            deviceId = (await storing.Registration.StartAsync()).DeviceId;
            transferId = await storing.Outbox.SendFileAsync("reading.bin", new MemoryStream(content), "application/octet-stream");
            accessToken = (await storing.Store.LoadAsync())!.AccessToken!;
        }

        // The first chunk reaches the server corrupted (one bit flipped on the way, properties intact) before the device
        // sends its copy: the server stages the corrupted bytes, acknowledges the device's copy as a resend, and finds the
        // mismatch only when the whole is there. (The broker takes one connection per client ID: the device is offline.)
        var corrupted = content[..chunkBytes];
        corrupted[100] ^= 0x01;
        await using (var raw = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "e2e-corrupt", deviceId, accessToken))
        {
            var staged = await raw.Client.PublishAsync(Chunk(deviceId, transferId, 0, content.Length, chunkBytes, sha256, corrupted));
            Assert.Equal(MqttClientPublishReasonCode.Success, staged.ReasonCode);
        }

        await using var device = DeviceHarness.Create(_server.MqttEndpoint, "e2e-corrupt", _states.Combine("e2e-corrupt"), token, output, o => o.ChunkBytes = chunkBytes);
        await device.Registration.StartAsync();
        await device.Publisher.StartAsync(CancellationToken.None);
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), depth => depth == 0, TimeSpan.FromSeconds(60), "the outbox has no rows of the refused transfer left");
        var health = device.Services.GetRequiredService<DeviceHealth>();
        var told = await Eventually.ReturnsAsync(() => Task.FromResult(health.FaultOf(DeviceComponents.Quarantine)), f => f is not null, TimeSpan.FromSeconds(10), "the device's health names the quarantined transfer");

        var (state, _, reason) = await probe.TransferAsync(deviceId, transferId);
        var sent = probe.PublishedSince(transferId).Count - 1;
        output.WriteLine($"CORRUPT-CHUNK chunks={FileChunks(content.Length, chunkBytes)} device_publishes={sent} state={state} reason={reason} health={told}");
        Assert.Equal(TransferStates.Refused, state);
        Assert.Contains("sha", reason!, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("sha", told!.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Empty(await probe.FilesAsync(deviceId));

        // Each chunk went at most once: the refusal of one ends the transfer at the device (no endless resend), and with no
        // rows left nothing of it can be sent again.
        Assert.True(sent <= FileChunks(content.Length, chunkBytes), $"the device published {sent} chunks of a {FileChunks(content.Length, chunkBytes)}-chunk transfer");
    }

    [Fact]
    public async Task IncompleteTransfer_ExpiresOnTheServer_ItsStagedBytesAreRemoved_AndItsStatusIsUnknown()
    {
        var clock = new FakeTimeProvider(TimeProvider.System.GetUtcNow());
        await using var server = await TestServer.StartAsync(output, o => o.IncompleteTransferExpiry = TimeSpan.FromHours(1), timeProvider: clock);
        var probe = TransferProbe.Attach(server);
        var token = await server.CreateTokenAsync();
        const int chunkBytes = 16 * 1024;
        var content = RandomNumberGenerator.GetBytes(8 * chunkBytes);
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(content));
        string deviceId;
        string accessToken;
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "e2e-expire", _states.Combine("e2e-expire"), token.Token, output))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
            accessToken = (await device.Store.LoadAsync())!.AccessToken!;
        }

        // A device that sent half of a file and went away.
        string transferId = "t-expire-1";
        await using (var raw = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "e2e-expire", deviceId, accessToken))
        {
            for (var i = 0; i < 4; i++)
            {
                var result = await raw.Client.PublishAsync(Chunk(deviceId, transferId, i, content.Length, chunkBytes, sha256, content.AsSpan(i * chunkBytes, chunkBytes).ToArray()));
                Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode);
            }
        }

        var staging = Path.Combine(server.DataDirectory, "files", "staging");
        Assert.NotEmpty(Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories));
        Assert.Equal(4, (await probe.HeldChunksAsync(deviceId, transferId)).Count);

        clock.Advance(TimeSpan.FromHours(1) + TimeSpan.FromMinutes(10));
        await Eventually.ReturnsAsync(
            async () => (await probe.TransferAsync(deviceId, transferId)).State,
            state =>
            {
                // The sweeper runs on the server's clock: nudge it along while waiting for it.
                clock.Advance(TimeSpan.FromMinutes(1));
                return state == TransferStates.Unknown;
            },
            TimeSpan.FromSeconds(30),
            "the incomplete transfer expires");

        Assert.Empty(Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories));
        Assert.Empty(await probe.HeldChunksAsync(deviceId, transferId));
    }

    private async Task<DeviceHarness> StartDeviceAsync(TestServer server, string clientId)
    {
        var device = DeviceHarness.Create(server.MqttEndpoint, clientId, _states.Combine(clientId), (await server.CreateTokenAsync()).Token, output);
        await device.Registration.StartAsync();
        await device.Publisher.StartAsync(CancellationToken.None);
        return device;
    }

    private static int FileChunks(long size, int chunkBytes = TransferLimits.DefaultChunkBytes) => (int)Math.Max(1, (size + chunkBytes - 1) / chunkBytes);

    private static MqttApplicationMessage Chunk(string deviceId, string transferId, int index, long size, int chunkBytes, string sha256, byte[] payload)
    {
        var count = FileChunks(size, chunkBytes);
        return new MqttApplicationMessageBuilder()
            .WithTopic(Enroll.Protocol.Topics.EnrollTopics.DeviceFiles(deviceId))
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithContentType("application/octet-stream")
            .WithUserProperty(TransferProperties.TransferId, Utf8(transferId))
            .WithUserProperty(TransferProperties.ChunkIndex, Utf8(index.ToString(CultureInfo.InvariantCulture)))
            .WithUserProperty(TransferProperties.ChunkCount, Utf8(count.ToString(CultureInfo.InvariantCulture)))
            .WithUserProperty(TransferProperties.ChunkSize, Utf8(chunkBytes.ToString(CultureInfo.InvariantCulture)))
            .WithUserProperty(TransferProperties.Size, Utf8(size.ToString(CultureInfo.InvariantCulture)))
            .WithUserProperty(TransferProperties.Sha256, Utf8(sha256))
            .WithUserProperty(TransferProperties.Name, Utf8("reading.bin"))
            .Build();
    }

    private static ReadOnlyMemory<byte> Utf8(string value) => Encoding.UTF8.GetBytes(value);
}
