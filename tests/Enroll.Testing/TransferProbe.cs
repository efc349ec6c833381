using System.Collections.Concurrent;
using System.Security.Cryptography;
using Enroll.Protocol.Topics;
using Enroll.Protocol.Transfers;
using Enroll.Server.Broker;
using Enroll.Server.Files;
using Enroll.Server.Registry;
using MQTTnet.Packets;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Testing;

/// <summary>
/// What an in-process server saw of chunked transfers, for end-to-end and fault tests that run the device elsewhere (a
/// child process): every chunk PUBLISH that reached its broker, by transfer and chunk index (so resends can be counted),
/// the chunks its registry holds for a transfer, and the files it stored with the SHA-256 of their stored bytes.
/// </summary>
public sealed class TransferProbe
{
    private readonly ConcurrentQueue<ChunkPublish> _publishes = new();
    private readonly IFileStore _files;
    private readonly IBlobStore _blobs;

    private TransferProbe(TestServer server)
    {
        _files = server.Host.Services.GetRequiredService<IFileStore>();
        _blobs = server.Host.Services.GetRequiredService<IBlobStore>();
        var broker = server.Host.Services.GetRequiredService<EmbeddedBroker>();
        broker.Server.InterceptingPublishAsync += e =>
        {
            if (e.ClientId == BrokerSession.ServerClientId)
            {
                return Task.CompletedTask;
            }

            string? transferId = null;
            int? index = null;
            foreach (var property in e.ApplicationMessage.UserProperties ?? [])
            {
                if (property.Name == TransferProperties.TransferId)
                {
                    transferId = property.ReadValueAsString();
                }
                else if (property.Name == TransferProperties.ChunkIndex && int.TryParse(property.ReadValueAsString(), System.Globalization.CultureInfo.InvariantCulture, out var i))
                {
                    index = i;
                }
            }

            if (transferId is not null && index is not null)
            {
                _publishes.Enqueue(new ChunkPublish(e.ApplicationMessage.Topic, transferId, index.Value, _publishes.Count));
            }

            return Task.CompletedTask;
        };
    }

    /// <summary>Starts watching <paramref name="server"/> (its broker and its stores).</summary>
    public static TransferProbe Attach(TestServer server) => new(server);

    /// <summary>How many chunk publishes the broker has seen so far: a mark to count from.</summary>
    public int Mark() => _publishes.Count;

    /// <summary>Chunk indexes of <paramref name="transferId"/> published since <paramref name="mark"/> (0: since the probe was attached), one entry per PUBLISH.</summary>
    public IReadOnlyList<int> PublishedSince(string transferId, int mark = 0) =>
        [.. _publishes.Where(p => p.Sequence >= mark && p.TransferId == transferId).Select(p => p.Index)];

    /// <summary>Every chunk publish so far, in arrival order.</summary>
    public IReadOnlyList<ChunkPublish> Publishes => [.. _publishes];

    /// <summary>The indexes of the chunks the server's registry holds for the transfer (empty once it finished or when unknown).</summary>
    public Task<IReadOnlyList<int>> HeldChunksAsync(string deviceId, string transferId) => _files.ReceivedChunksAsync(deviceId, transferId);

    /// <summary>The transfer's state as the registry has it: receiving, complete, refused, or unknown.</summary>
    public async Task<(string State, int Received, string? Reason)> TransferAsync(string deviceId, string transferId)
    {
        var transfer = await _files.GetTransferAsync(deviceId, transferId);
        return transfer is null ? (TransferStates.Unknown, 0, null) : (transfer.State, transfer.Received, transfer.Reason);
    }

    /// <summary>The device's stored files: ID, transfer, name, size, the SHA-256 the registry recorded and the SHA-256 of the stored bytes.</summary>
    public async Task<IReadOnlyList<ProbedFile>> FilesAsync(string deviceId)
    {
        var files = await _files.ListFilesAsync(deviceId, 1000);
        var probed = new List<ProbedFile>(files.Count);
        foreach (var file in files)
        {
            string? actual = null;
            await using (var stream = _blobs.OpenRead(file.BlobKey))
            {
                if (stream is not null)
                {
                    actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(stream));
                }
            }

            probed.Add(new ProbedFile(file.FileId, file.TransferId, file.Name, file.Size, file.Sha256, actual));
        }

        return probed;
    }

    /// <summary>Is <paramref name="topic"/> a device's files topic (rather than a stream's messages topic)?</summary>
    public static bool IsFilesTopic(string topic) => EnrollTopics.TryParseDeviceFileTopic(topic, out _);
}

/// <summary>One chunk PUBLISH that reached the broker; <paramref name="Sequence"/> orders them.</summary>
public sealed record ChunkPublish(string Topic, string TransferId, int Index, int Sequence);

/// <summary>A stored file as a test checks it: <paramref name="StoredBytesSha256"/> is computed from the blob store's bytes (null when they are missing).</summary>
public sealed record ProbedFile(string FileId, string TransferId, string Name, long Size, string RecordedSha256, string? StoredBytesSha256);
