using Enroll.Protocol.Access;
using Enroll.Protocol.Transfers;
using Enroll.Server.Files;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Files;

/// <summary>
/// Chunks through a real Mosquitto (the documented ACL): the broker acknowledges the device, the server's ingest session
/// takes the chunks from <c>$share/enroll/enroll/v1/devices/+/files</c> and the messages topics, and the whole is stored
/// once. A refusal cannot reach the device in a PUBACK here; it is in the transfer's status.
/// </summary>
public sealed class ExternalChunkIngestTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int ChunkSize = 4096;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private MosquittoBroker _mosquitto = null!;
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _mosquitto = await MosquittoBroker.StartAsync(acl: MosquittoAcl.Render());
        _server = await TestServer.StartAsync(output, o =>
        {
            o.ExternalBroker = _mosquitto.Endpoint;
            o.BrokerPassword = "unchecked-here";
            o.BrokerClientId = "enroll-test-files";
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _mosquitto.DisposeAsync();
    }

    private IFileStore FileStore => _server.Host.Services.GetRequiredService<IFileStore>();

    private FolderBlobStore Blobs => (FolderBlobStore)_server.Host.Services.GetRequiredService<IBlobStore>();

    // No password file: Mosquitto takes the user name as given, and the ACL's %u patterns confine the device to its topics.
    private Task<RawMqttClient> DeviceAsync(string deviceId) => RawMqttClient.ConnectAsync(_mosquitto.Endpoint, "raw-" + deviceId, deviceId, "access-token");

    private static async Task SendAllAsync(RawMqttClient client, IEnumerable<MqttApplicationMessage> chunks)
    {
        foreach (var chunk in chunks)
        {
            var result = await client.Client.PublishAsync(chunk);
            Assert.True(result.IsSuccess, $"the broker refused a chunk: {result.ReasonCode} {result.ReasonString}");
        }
    }

    private Task<TransferRecord?> SettledAsync(string deviceId, string transferId) =>
        Eventually.ReturnsAsync(() => FileStore.GetTransferAsync(deviceId, transferId), t => t is { State: not TransferStates.Receiving }, Patience, $"transfer {transferId} finished");

    [Fact]
    public async Task File_OutOfOrderWithResends_StoredOnceWithTheBytesSent()
    {
        await using var client = await DeviceAsync("dev-ext-file");
        var whole = Chunks.RandomBytes((3 * ChunkSize) + 9, 21);
        var chunks = Chunks.OfFile("dev-ext-file", "tr-ext", whole, ChunkSize, name: "trace.bin");

        await SendAllAsync(client, [chunks[3], chunks[0], chunks[0], chunks[2], chunks[1], chunks[3]]);

        var transfer = await SettledAsync("dev-ext-file", "tr-ext");
        Assert.Equal(TransferStates.Complete, transfer!.State);
        var file = Assert.Single(await FileStore.ListFilesAsync("dev-ext-file", 10));
        await using var stored = Blobs.OpenRead(file.BlobKey)!;
        using var copy = new MemoryStream();
        await stored.CopyToAsync(copy);
        Assert.Equal(whole, copy.ToArray());
        Assert.Equal(("trace.bin", file.FileId), (file.Name, transfer.FileId));
    }

    [Fact]
    public async Task Message_InChunks_StoredAsOneMessage()
    {
        await using var client = await DeviceAsync("dev-ext-msg");
        var whole = Chunks.RandomBytes((2 * ChunkSize) + 1, 22);

        await SendAllAsync(client, Chunks.OfMessage("dev-ext-msg", "telemetry", "tr-ext-msg", "m-ext", whole, ChunkSize));

        var message = await Eventually.ReturnsAsync(() => _server.MessagesAsync("dev-ext-msg"), m => m.Count > 0, Patience, "the message stored");
        Assert.Equal(whole, Assert.Single(message).Payload.ToArray());
        Assert.Equal(TransferStates.Complete, (await SettledAsync("dev-ext-msg", "tr-ext-msg"))!.State);
    }

    [Fact]
    public async Task HashMismatch_TransferRefusedWithTheReason()
    {
        await using var client = await DeviceAsync("dev-ext-hash");
        var whole = Chunks.RandomBytes(ChunkSize + 1, 23);

        await SendAllAsync(client, Chunks.OfFile("dev-ext-hash", "tr-ext-bad", whole, ChunkSize, sha256: Chunks.Sha256([9])));

        var transfer = await SettledAsync("dev-ext-hash", "tr-ext-bad");
        Assert.Equal(TransferStates.Refused, transfer!.State);
        Assert.StartsWith("sha256 mismatch", transfer.Reason, StringComparison.Ordinal);
        Assert.Empty(await FileStore.ListFilesAsync("dev-ext-hash", 10));

        // The refusal commits, then its staged bytes are removed; through an external broker no PUBACK waits for both.
        await Eventually.ReturnsAsync(() => Task.FromResult(Blobs.ListStaged().ToList()), staged => staged.Count == 0, Patience, "the refused transfer's staged bytes removed");
    }

    [Fact]
    public async Task AnotherDevicesFilesTopic_RefusedByTheBroker()
    {
        await using var attacker = await DeviceAsync("dev-ext-attacker");

        var result = await attacker.Client.PublishAsync(Chunks.OfFile("dev-ext-victim", "tr-evil", Chunks.RandomBytes(100, 24), ChunkSize)[0]);

        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
        Assert.Null(await FileStore.GetTransferAsync("dev-ext-victim", "tr-evil"));
    }
}
