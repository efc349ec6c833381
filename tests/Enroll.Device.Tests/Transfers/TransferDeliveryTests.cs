using System.Globalization;
using System.Security.Cryptography;
using Enroll.Protocol.Topics;
using Enroll.Protocol.Transfers;
using Enroll.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Transfers;

/// <summary>
/// Transfers from the device library to a real server over its embedded broker (issue 14): what goes over the wire, a
/// large message stored as one, a file stored with the same SHA-256, a corrupted chunk refused and quarantined without
/// endless resends, and a resume that sends only what the server lacks. Sizes stay small (1-3 MiB, chunks of 32-64 KiB).
/// </summary>
public sealed class TransferDeliveryTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private async Task<(DeviceHarness Device, string DeviceId)> RegisteredDeviceAsync(TestServer server, string statePath, string clientId, Action<EnrollDeviceOptions>? configure = null)
    {
        var token = await server.CreateTokenAsync();
        var device = DeviceHarness.Create(server.MqttEndpoint, clientId, statePath, token.Token, output, o =>
        {
            o.CompressAbove = 0;
            o.MaxAttempts = 50;
            o.OutboxMaxBytes = 256L * 1024 * 1024;
            configure?.Invoke(o);
        });
        var identity = await device.Registration.StartAsync();
        return (device, identity.DeviceId);
    }

    /// <summary>The server's stored blob of a transfer (files/stored/..., named after the transfer ID).</summary>
    private static string StoredFile(TestServer server, string transferId) =>
        Directory.GetFiles(Path.Combine(server.DataDirectory, "files", "stored"), transferId + "*", SearchOption.AllDirectories).Single();

    [Fact]
    public async Task LargeMessage_IsPublishedAsChunks_EachCarryingTheMessagesAndTheTransfersProperties()
    {
        await using var server = await TestServer.StartAsync(output);
        var wire = new PublishRecorder(server);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state.Path, "wire-1", o => o.ChunkBytes = 64 * 1024);
        await using var _ = device;
        var payload = Random((1024 * 1024) + 100, seed: 1);

        var id = await device.Outbox.SendAsync("logs/big", payload, new MessageProperties { ContentType = "application/octet-stream", Custom = new Dictionary<string, string> { ["site"] = "north" } });
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "every chunk acknowledged");

        var chunks = wire.On(EnrollTopics.DeviceMessages(deviceId, "logs/big"));
        Assert.Equal(17, chunks.Count);
        var sha = Convert.ToHexStringLower(SHA256.HashData(payload));
        foreach (var chunk in chunks)
        {
            Assert.Equal(id, chunk.Properties["message_id"]);
            Assert.Equal(id, chunk.Properties[TransferProperties.TransferId]);
            Assert.Equal("17", chunk.Properties[TransferProperties.ChunkCount]);
            Assert.Equal("65536", chunk.Properties[TransferProperties.ChunkSize]);
            Assert.Equal(payload.Length.ToString(CultureInfo.InvariantCulture), chunk.Properties[TransferProperties.Size]);
            Assert.Equal(sha, chunk.Properties[TransferProperties.Sha256]);
            Assert.Equal("north", chunk.Properties["site"]);
            Assert.True(chunk.Properties.ContainsKey("created_at"));
            Assert.Equal("application/octet-stream", chunk.ContentType);
        }

        var ordered = chunks.OrderBy(c => int.Parse(c.Properties[TransferProperties.ChunkIndex], CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(Enumerable.Range(0, 17).Select(i => i.ToString(CultureInfo.InvariantCulture)), ordered.Select(c => c.Properties[TransferProperties.ChunkIndex]));
        Assert.Equal(payload, ordered.SelectMany(c => c.Payload).ToArray());
        Assert.Equal(17, device.Outbox.GetTransfer(id)!.AcknowledgedChunks);
        Assert.Equal(OutboxTransferState.Delivered, device.Outbox.GetTransfer(id)!.State);
    }

    [Fact]
    public async Task ThreeMiBMessage_ArrivesAtTheServerAsOneIdenticalMessage()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state.Path, "big-1", o => o.ChunkBytes = 64 * 1024);
        await using var _ = device;
        var payload = Random(3 * 1024 * 1024, seed: 2);

        var id = await device.Outbox.SendAsync("camera", payload);
        await device.StartAgentsAsync();

        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n >= 1, Patience, "the message stored");
        var stored = Assert.Single(await server.MessagesAsync(deviceId));
        Assert.Equal(id, stored.MessageId);
        Assert.Equal(payload, stored.Payload.ToArray());
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "the outbox drained");
    }

    [Fact]
    public async Task File_ArrivesAtTheServersFileStore_WithTheSameSha256()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state.Path, "file-1", o => o.ChunkBytes = 32 * 1024);
        await using var _ = device;
        var content = Random((2 * 1024 * 1024) + 5, seed: 3);
        var path = Path.Combine(state.Path, "dump.bin");
        await File.WriteAllBytesAsync(path, content);

        var id = await device.Outbox.SendFileAsync(path, contentType: "application/octet-stream");
        await device.StartAgentsAsync();

        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetTransfer(id)!.State), s => s == OutboxTransferState.Delivered, Patience, "the file delivered");
        var stored = StoredFile(server, id);
        output.WriteLine($"device {deviceId}: transfer {id} stored as {stored}");
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(content)), Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(stored))));
    }

    [Fact]
    public async Task CorruptedChunk_IsRefusedByTheServer_TheTransferIsQuarantined_HealthSaysWhy_AndNothingIsResent()
    {
        await using var server = await TestServer.StartAsync(output);
        var wire = new PublishRecorder(server);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state.Path, "corrupt-1", o => o.ChunkBytes = 32 * 1024);
        await using var _ = device;
        var id = await device.Outbox.SendFileAsync("trace.bin", new MemoryStream(Random(1024 * 1024, seed: 4)));
        await device.Outbox.SendAsync("s", "{\"after\":true}"u8.ToArray());

        // The test hook: one stored chunk damaged on disk after its hash was taken (same length, other bytes).
        using (var connection = new SqliteConnection($"Data Source={Path.Combine(state.Path, "outbox.db")};Pooling=false"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE messages SET payload = zeroblob(size) WHERE transfer_id = $t AND chunk_index = 5";
            command.Parameters.AddWithValue("$t", id);
            Assert.Equal(1, command.ExecuteNonQuery());
        }

        await device.StartAgentsAsync();
        var health = device.Services.GetRequiredService<DeviceHealth>();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetTransfer(id)!.State), s => s == OutboxTransferState.Failed, Patience, "the transfer failed");
        await Eventually.ReturnsAsync(() => server.CountMessagesAsync(deviceId), n => n == 1, Patience, "the message behind it delivered");

        var transfer = device.Outbox.GetTransfer(id)!;
        Assert.Contains("0x99", transfer.Reason, StringComparison.Ordinal);
        // Reported just after the transfer's state is committed (which the wait above saw).
        var fault = await Eventually.ReturnsAsync(() => Task.FromResult(health.FaultOf(DeviceComponents.Quarantine)), f => f is not null, Patience, "health reports the quarantine");
        Assert.NotNull(fault);
        Assert.Equal(DeviceFaultKind.MessageRefused, fault.Kind);
        Assert.Contains("trace.bin", fault.Message, StringComparison.Ordinal);
        Assert.Equal(1, device.Outbox.GetStatistics().Quarantined);

        // The message's row goes once its acknowledgement is deleted, a moment after the server stored it.
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetStatistics().Depth), d => d == 0, Patience, "the outbox drained");

        // Each of the 32 chunks went out once: the refusal ended the transfer instead of starting a resend loop.
        Assert.Equal(32, wire.On(EnrollTopics.DeviceFiles(deviceId)).Count);
    }

    [Fact]
    public async Task Resume_WhenTheServerHoldsSomeChunks_SendsOnlyTheMissingOnes_EachOnce()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state.Path, "resume-1", o => o.ChunkBytes = 32 * 1024);
        await using var _ = device;
        var content = Random(1024 * 1024, seed: 5);
        var id = await device.Outbox.SendFileAsync("resume.bin", new MemoryStream(content));

        // The server already holds chunks 0-9 and 20: sent as the device, as an earlier connection would have (their
        // acknowledgements never reached the outbox).
        var access = (await device.Store.LoadAsync())!.AccessToken!;
        await using (var earlier = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "resume-1", deviceId, access))
        {
            foreach (var index in Enumerable.Range(0, 10).Append(20))
            {
                var chunk = new MqttApplicationMessageBuilder()
                    .WithTopic(EnrollTopics.DeviceFiles(deviceId))
                    .WithPayload(content.AsMemory(index * 32 * 1024, 32 * 1024).ToArray())
                    .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
                    .WithUserProperty(TransferProperties.TransferId, System.Text.Encoding.UTF8.GetBytes(id).AsMemory())
                    .WithUserProperty(TransferProperties.ChunkIndex, System.Text.Encoding.UTF8.GetBytes(index.ToString(CultureInfo.InvariantCulture)).AsMemory())
                    .WithUserProperty(TransferProperties.ChunkCount, System.Text.Encoding.UTF8.GetBytes("32").AsMemory())
                    .WithUserProperty(TransferProperties.ChunkSize, System.Text.Encoding.UTF8.GetBytes((32 * 1024).ToString(CultureInfo.InvariantCulture)).AsMemory())
                    .WithUserProperty(TransferProperties.Size, System.Text.Encoding.UTF8.GetBytes(content.Length.ToString(CultureInfo.InvariantCulture)).AsMemory())
                    .WithUserProperty(TransferProperties.Sha256, System.Text.Encoding.UTF8.GetBytes(Convert.ToHexStringLower(SHA256.HashData(content))).AsMemory())
                    .WithUserProperty(TransferProperties.Name, System.Text.Encoding.UTF8.GetBytes("resume.bin").AsMemory())
                    .Build();
                Assert.True((await earlier.Client.PublishAsync(chunk)).IsSuccess);
            }
        }

        var wire = new PublishRecorder(server);
        var requests = server.CountRequests();
        await device.StartAgentsAsync();

        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetTransfer(id)!.State), s => s == OutboxTransferState.Delivered, Patience, "the file delivered");
        var sent = wire.On(EnrollTopics.DeviceFiles(deviceId)).Select(c => int.Parse(c.Properties[TransferProperties.ChunkIndex], CultureInfo.InvariantCulture)).Order().ToList();
        output.WriteLine($"the device published {sent.Count} chunks after asking transfers/status {requests[$"enroll/v1/devices/{deviceId}/transfers/status"]} time(s)");
        Assert.Equal(Enumerable.Range(10, 22).Where(i => i != 20), sent);
        Assert.Equal(1, requests[$"enroll/v1/devices/{deviceId}/transfers/status"]);
        Assert.Equal(32, device.Outbox.GetTransfer(id)!.AcknowledgedChunks);
        var stored = StoredFile(server, id);
        Assert.Equal(content, await File.ReadAllBytesAsync(stored));
    }

    [Fact]
    public async Task ConnectionReset_MidFile_CompletesWithTheSameSha256_ResendingAtMostWhatWasInFlight()
    {
        await using var server = await TestServer.StartAsync(output);
        var wire = new PublishRecorder(server);
        using var state = new TempDirectory();
        var (device, deviceId) = await RegisteredDeviceAsync(server, state.Path, "reset-1", o =>
        {
            o.ChunkBytes = 16 * 1024;
            o.PublishWindow = 8;
        });
        await using var _ = device;
        var content = Random(3 * 1024 * 1024, seed: 6);
        var id = await device.Outbox.SendFileAsync("reset.bin", new MemoryStream(content));
        await device.StartAgentsAsync();

        await Eventually.ReturnsAsync(() => Task.FromResult(wire.On(EnrollTopics.DeviceFiles(deviceId)).Count), n => n >= 60, Patience, "60 chunks sent");
        await wire.DisconnectAsync("reset-1");

        await Eventually.ReturnsAsync(() => Task.FromResult(device.Outbox.GetTransfer(id)!.State), s => s == OutboxTransferState.Delivered, Patience, "the file delivered");
        var stored = StoredFile(server, id);
        Assert.Equal(SHA256.HashData(content), SHA256.HashData(await File.ReadAllBytesAsync(stored)));
        var published = wire.On(EnrollTopics.DeviceFiles(deviceId)).Count;
        output.WriteLine($"{published} chunk publishes for 192 chunks");
        Assert.InRange(published, 192, 192 + 8);
    }
}
