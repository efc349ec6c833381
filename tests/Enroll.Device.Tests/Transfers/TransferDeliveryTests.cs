using System.Globalization;
using System.Security.Cryptography;
using Enroll.Protocol.Topics;
using Enroll.Protocol.Transfers;
using Enroll.Testing;
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
}
