using System.IO.Compression;
using System.Text;
using Enroll.Protocol.Transfers;
using Enroll.Server.Files;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Files;

/// <summary>
/// Chunks of messages and files sent by a raw MQTT 5 client to the embedded broker (docs/protocol.md §13): each chunk's
/// PUBACK says stored (0x00), refused for good (0x99, 0x97, with the reason), and the whole is stored once with the bytes
/// sent, whatever the order and the resends.
/// </summary>
public sealed class ChunkIngestTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int ChunkSize = 4096;
    private readonly TempDirectory _data = new("enroll-server");
    private readonly TempDirectory _states = new();
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await StartAsync();

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
        _data.Dispose();
    }

    private Task<TestServer> StartAsync(Action<EnrollServerOptions>? configure = null) =>
        TestServer.StartAsync(output, configure, dataDirectory: _data.Path);

    private IFileStore FileStore => _server.Host.Services.GetRequiredService<IFileStore>();

    private FolderBlobStore Blobs => (FolderBlobStore)_server.Host.Services.GetRequiredService<IBlobStore>();

    private async Task<(RawMqttClient Client, string DeviceId)> DeviceAsync(string clientId)
    {
        var (client, deviceId, _) = await DeviceWithTokenAsync(clientId);
        return (client, deviceId);
    }

    private async Task<(RawMqttClient Client, string DeviceId, string AccessToken)> DeviceWithTokenAsync(string clientId)
    {
        var token = await _server.CreateTokenAsync();
        string deviceId, accessToken;
        await using (var device = DeviceHarness.Create(_server.MqttEndpoint, clientId, _states.Combine(clientId), token.Token, output))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
            accessToken = (await device.Store.LoadAsync())!.AccessToken!;
        }

        return (await RawMqttClient.ConnectAsync(_server.MqttEndpoint, clientId, deviceId, accessToken), deviceId, accessToken);
    }

    private static async Task<MqttClientPublishResult> SendAsync(RawMqttClient client, MqttApplicationMessage chunk) => await client.Client.PublishAsync(chunk);

    private static async Task AllStoredAsync(RawMqttClient client, IEnumerable<MqttApplicationMessage> chunks)
    {
        foreach (var chunk in chunks)
        {
            var result = await SendAsync(client, chunk);
            Assert.True(result.ReasonCode == MqttClientPublishReasonCode.Success, $"chunk refused: {result.ReasonCode} {result.ReasonString}");
        }
    }

    private byte[] StoredBytes(StoredFileRecord file)
    {
        using var stream = Blobs.OpenRead(file.BlobKey);
        Assert.NotNull(stream);
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    [Fact]
    public async Task File_ChunksInOrder_StoredOnceWithTheBytesSent()
    {
        var (client, deviceId) = await DeviceAsync("files-order");
        await using var _ = client;
        var whole = Chunks.RandomBytes((3 * ChunkSize) + 100, 1);

        await AllStoredAsync(client, Chunks.OfFile(deviceId, "tr-1", whole, ChunkSize, name: "boot.log"));

        var file = Assert.Single(await FileStore.ListFilesAsync(deviceId, 10));
        Assert.Equal(whole, StoredBytes(file));
        Assert.Equal(("boot.log", "text/plain", (long)whole.Length, Chunks.Sha256(whole)), (file.Name, file.ContentType, file.Size, file.Sha256));
        var transfer = await FileStore.GetTransferAsync(deviceId, "tr-1");
        Assert.Equal((TransferStates.Complete, file.FileId), (transfer!.State, transfer.FileId));
        Assert.Empty(Blobs.ListStaged());
    }

    [Fact]
    public async Task File_ReverseOrderWithResends_EachChunkWrittenOnceAndEveryResendAcknowledged()
    {
        var (client, deviceId) = await DeviceAsync("files-reverse");
        await using var _ = client;
        var whole = Chunks.RandomBytes((2 * ChunkSize) + 7, 2);
        var chunks = Chunks.OfFile(deviceId, "tr-rev", whole, ChunkSize);
        var flushesBefore = Blobs.Flushes;
        using var outcomes = new ChunkOutcomes(_server);

        await AllStoredAsync(client, [chunks[2], chunks[2], chunks[1], chunks[2], chunks[1], chunks[0], chunks[0], chunks[1]]);

        // Sent one at a time, each new chunk costs exactly one flush: the resends were not written.
        Assert.Equal(3, Blobs.Flushes - flushesBefore);
        Assert.Equal((3, 5), (outcomes["stored"], outcomes["duplicate"]));
        var file = Assert.Single(await FileStore.ListFilesAsync(deviceId, 10));
        Assert.Equal(whole, StoredBytes(file));
    }

    [Fact]
    public async Task Message_InChunks_StoredAsOneMessageWithItsProperties()
    {
        var (client, deviceId) = await DeviceAsync("msg-chunks");
        await using var _ = client;
        var whole = Chunks.RandomBytes((2 * ChunkSize) + 1, 3);

        await AllStoredAsync(client, Chunks.OfMessage(deviceId, "logs/kernel", "tr-msg", "m-big", whole, ChunkSize, custom: new Dictionary<string, string> { ["unit"] = "bytes" }));

        var message = Assert.Single(await _server.MessagesAsync(deviceId));
        Assert.Equal(("m-big", "logs/kernel", "application/json"), (message.MessageId, message.Stream, message.ContentType));
        Assert.Equal(whole, message.Payload.ToArray());
        Assert.Equal(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero), message.CreatedAt);
        Assert.Equal("bytes", Assert.Single(message.Properties).Value);
        Assert.Equal(TransferStates.Complete, (await FileStore.GetTransferAsync(deviceId, "tr-msg"))!.State);
        Assert.Empty(Blobs.ListStaged());
        Assert.Empty(await FileStore.ListFilesAsync(deviceId, 10));
    }

    [Fact]
    public async Task Message_GzipOfTheWhole_StoredDecompressed()
    {
        var (client, deviceId) = await DeviceAsync("msg-gzip");
        await using var _ = client;
        var plain = Encoding.UTF8.GetBytes(Convert.ToHexString(Chunks.RandomBytes(16 * 1024, 4)));
        using var compressed = new MemoryStream();
        await using (var gzip = new GZipStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(plain);
        }

        var chunks = Chunks.OfMessage(deviceId, "telemetry", "tr-gz", "m-gz", compressed.ToArray(), ChunkSize, encoding: "gzip");
        Assert.True(chunks.Count > 1);

        await AllStoredAsync(client, chunks);

        Assert.Equal(plain, Assert.Single(await _server.MessagesAsync(deviceId)).Payload.ToArray());
    }

    [Fact]
    public async Task HashMismatch_LastChunkRefusedWith0x99_AndEveryResendAgain()
    {
        var (client, deviceId) = await DeviceAsync("files-hash");
        await using var _ = client;
        var whole = Chunks.RandomBytes((2 * ChunkSize) + 10, 5);
        var chunks = Chunks.OfFile(deviceId, "tr-bad", whole, ChunkSize, sha256: Chunks.Sha256([1, 2, 3]));
        using var outcomes = new ChunkOutcomes(_server);
        await AllStoredAsync(client, chunks.Take(2));

        var last = await SendAsync(client, chunks[2]);
        var resend = await SendAsync(client, chunks[0]);

        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, last.ReasonCode);
        Assert.Contains("sha256 mismatch", last.ReasonString, StringComparison.Ordinal);
        Assert.Equal((1, 1), (outcomes["refused/hash"], outcomes["refused/refused_before"]));
        Assert.Equal((MqttClientPublishReasonCode.PayloadFormatInvalid, last.ReasonString), (resend.ReasonCode, resend.ReasonString));
        var transfer = await FileStore.GetTransferAsync(deviceId, "tr-bad");
        Assert.Equal((TransferStates.Refused, last.ReasonString), (transfer!.State, transfer.Reason));
        Assert.Empty(await FileStore.ListFilesAsync(deviceId, 10));
        Assert.Empty(Blobs.ListStaged());
    }

    [Fact]
    public async Task Quota_AFileThatDoesNotFit_RefusedWith0x97_AndItsOtherChunksToo()
    {
        await _server.DisposeAsync();
        _server = await StartAsync(o => o.DeviceFileQuotaBytes = 3 * ChunkSize);
        var (client, deviceId) = await DeviceAsync("files-quota");
        await using var _ = client;
        await AllStoredAsync(client, Chunks.OfFile(deviceId, "tr-fits", Chunks.RandomBytes(2 * ChunkSize, 6), ChunkSize));
        var tooMuch = Chunks.OfFile(deviceId, "tr-over", Chunks.RandomBytes(2 * ChunkSize, 7), ChunkSize);

        var first = await SendAsync(client, tooMuch[1]);
        var other = await SendAsync(client, tooMuch[0]);

        Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, first.ReasonCode);
        Assert.StartsWith("quota exceeded", first.ReasonString, StringComparison.Ordinal);
        Assert.Equal((MqttClientPublishReasonCode.QuotaExceeded, first.ReasonString), (other.ReasonCode, other.ReasonString));
        Assert.Equal(TransferStates.Refused, (await FileStore.GetTransferAsync(deviceId, "tr-over"))!.State);
        Assert.Equal(new DeviceFileUsage(2 * ChunkSize, 0), await FileStore.FileUsageAsync(deviceId));
    }

    public static TheoryData<string, string?, string> BadProperties => new()
    {
        { TransferProperties.TransferId, null, "transfer_id is required" },
        { TransferProperties.TransferId, "no spaces", "transfer_id is required" },
        { TransferProperties.ChunkCount, "3", "chunk_count must be 2" },
        { TransferProperties.ChunkSize, "512", "chunk_size at least 1024" },
        { TransferProperties.ChunkIndex, "-1", "decimal numbers" },
        { TransferProperties.Sha256, "ABC", "64 lowercase hexadecimal" },
        { TransferProperties.Name, "../etc/passwd", "must not be '.' or '..' nor contain '/'" },
        { TransferProperties.Size, "2000000000", "more than the server's maximum" },
    };

    [Theory]
    [MemberData(nameof(BadProperties))]
    public async Task Chunk_WithABadProperty_RefusedWith0x99SayingWhich(string property, string? value, string reason)
    {
        await _server.DisposeAsync();
        _server = await StartAsync(o => o.MaxFileBytes = 1024 * 1024);
        var (client, deviceId) = await DeviceAsync("files-bad");
        await using var _ = client;
        var chunk = Chunks.OfFile(deviceId, "tr-x", Chunks.RandomBytes(ChunkSize + 1, 8), ChunkSize)[0];

        var result = await SendAsync(client, Chunks.With(chunk, property, value));

        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, result.ReasonCode);
        Assert.Contains(reason, result.ReasonString, StringComparison.Ordinal);
        Assert.Empty(Blobs.ListStaged());
    }

    [Fact]
    public async Task Chunk_WhosePayloadLengthDoesNotMatch_RefusedWith0x99()
    {
        var (client, deviceId) = await DeviceAsync("files-length");
        await using var _ = client;
        var chunk = Chunks.OfFile(deviceId, "tr-len", Chunks.RandomBytes(ChunkSize + 1, 9), ChunkSize)[0];

        var result = await SendAsync(client, Chunks.With(chunk, "unrelated", null, payload: new byte[ChunkSize - 1]));

        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, result.ReasonCode);
        Assert.Contains($"chunk 0 must have {ChunkSize} bytes", result.ReasonString, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChunkedMessage_LargerThanTheServersMaximum_RefusedAtItsFirstChunk()
    {
        await _server.DisposeAsync();
        _server = await StartAsync(o => o.MaxMessageBytes = 2 * ChunkSize);
        var (client, deviceId) = await DeviceAsync("msg-max");
        await using var _ = client;
        var chunks = Chunks.OfMessage(deviceId, "telemetry", "tr-max", "m-max", Chunks.RandomBytes((2 * ChunkSize) + 1, 10), ChunkSize);

        var result = await SendAsync(client, chunks[0]);

        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, result.ReasonCode);
        Assert.Contains("more than the server's maximum of 8,192 bytes", result.ReasonString, StringComparison.Ordinal);
        Assert.Null(await FileStore.GetTransferAsync(deviceId, "tr-max"));
    }

    [Fact]
    public async Task PlainMessage_OverTheSinglePacketLimit_StillRefused()
    {
        var (client, deviceId) = await DeviceAsync("msg-plain");
        await using var _ = client;
        var message = new MqttApplicationMessageBuilder()
            .WithTopic($"enroll/v1/devices/{deviceId}/messages/telemetry")
            .WithPayload(new byte[(1024 * 1024) + 1])
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithUserProperty("message_id", Chunks.Utf8("m-plain"))
            .Build();

        var result = await SendAsync(client, message);

        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, result.ReasonCode);
        Assert.Contains("larger than 1048576 bytes", result.ReasonString, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TransferIdReusedForAnotherTransfer_ChunkRefusedAndTheFirstKept()
    {
        var (client, deviceId) = await DeviceAsync("files-reuse");
        await using var _ = client;
        var whole = Chunks.RandomBytes(ChunkSize + 5, 11);
        await AllStoredAsync(client, Chunks.OfFile(deviceId, "tr-same", whole, ChunkSize));

        var result = await SendAsync(client, Chunks.OfFile(deviceId, "tr-same", Chunks.RandomBytes(ChunkSize + 5, 12), ChunkSize)[0]);

        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, result.ReasonCode);
        Assert.Contains("belongs to another transfer", result.ReasonString, StringComparison.Ordinal);
        Assert.Equal(whole, StoredBytes(Assert.Single(await FileStore.ListFilesAsync(deviceId, 10))));
    }

    [Fact]
    public async Task AnotherDevicesFilesTopic_RefusedByTheBroker()
    {
        var (attacker, _) = await DeviceAsync("files-attacker");
        await using var a = attacker;
        var (victim, victimId) = await DeviceAsync("files-victim");
        await using var v = victim;

        var result = await SendAsync(attacker, Chunks.OfFile(victimId, "tr-evil", Chunks.RandomBytes(100, 13), ChunkSize)[0]);

        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
        Assert.Null(await FileStore.GetTransferAsync(victimId, "tr-evil"));
        Assert.Empty(Blobs.ListStaged());
    }

    [Fact]
    public async Task ServerRestartMidTransfer_TheRestCompletesItOnce()
    {
        var (client, deviceId, accessToken) = await DeviceWithTokenAsync("files-restart");
        var whole = Chunks.RandomBytes((3 * ChunkSize) + 3, 14);
        var chunks = Chunks.OfFile(deviceId, "tr-restart", whole, ChunkSize);
        await AllStoredAsync(client, chunks.Take(2));
        await client.DisposeAsync();

        await _server.DisposeAsync();
        _server = await StartAsync();
        await using var again = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "files-restart", deviceId, accessToken);
        await AllStoredAsync(again, [chunks[1], chunks[3], chunks[2], chunks[3]]);

        var file = Assert.Single(await FileStore.ListFilesAsync(deviceId, 10));
        Assert.Equal(whole, StoredBytes(file));
        Assert.Empty(Blobs.ListStaged());
    }

    /// <summary>The <c>enroll.server.transfers.chunks</c> counter of one server, by outcome (and <c>refused/{reason}</c>), from creation on.</summary>
    private sealed class ChunkOutcomes : IDisposable
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);
        private readonly System.Diagnostics.Metrics.MeterListener _listener = new();

        public ChunkOutcomes(TestServer server)
        {
            var meterFactory = server.Host.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == meterFactory && instrument.Name == Enroll.Server.Diagnostics.ServerInstruments.TransferChunks)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
            {
                string? outcome = null, reason = null;
                foreach (var tag in tags)
                {
                    if (tag.Key == "outcome")
                    {
                        outcome = tag.Value as string;
                    }
                    else if (tag.Key == "reason")
                    {
                        reason = tag.Value as string;
                    }
                }

                _counts.AddOrUpdate(reason is null ? outcome! : $"{outcome}/{reason}", value, (_, total) => total + value);
            });
            _listener.Start();
        }

        public long this[string key] => _counts.GetValueOrDefault(key);

        public void Dispose() => _listener.Dispose();
    }
}
