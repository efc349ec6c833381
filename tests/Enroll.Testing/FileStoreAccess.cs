using System.Security.Cryptography;
using Enroll.Protocol.Transfers;
using Enroll.Server.Files;
using Enroll.Server.Registry;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Testing;

/// <summary>
/// A test server's files made the way its ingest makes them, through its own registry (<see cref="IFileStore"/>) and
/// blob store (<see cref="IBlobStore"/>): a transfer started, each chunk staged at its offset and recorded, the staged
/// bytes committed and the transfer completed. For tests of what operators do with files (HTTP API, CLI) that need not
/// drive a device through the chunk protocol.
/// </summary>
public static class FileStoreAccess
{
    /// <summary>Stores <paramref name="content"/> as a file of <paramref name="deviceId"/> and returns its file ID.</summary>
    public static async Task<string> StoreFileInStoreAsync(this TestServer server, string deviceId, string name, byte[] content, string? contentType = null, int chunkSize = 64 * 1024)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(content);
        var (files, blobs, time) = Services(server);
        var transfer = await StartAsync(files, time, deviceId, NewId("t"), name, content, contentType, chunkSize);
        var key = FolderBlobStore.KeyFor(deviceId, transfer.TransferId);
        for (var index = 0; index < transfer.ChunkCount; index++)
        {
            await StageAsync(files, blobs, time, transfer, content, index);
        }

        await blobs.CommitAsync(key, key);
        var file = await files.CompleteFileTransferAsync(
            new StoredFileRecord
            {
                FileId = NewId("file_"),
                DeviceId = deviceId,
                TransferId = transfer.TransferId,
                Name = name,
                ContentType = contentType,
                Size = content.Length,
                Sha256 = transfer.Sha256,
                BlobKey = key,
                ReceivedAt = time.GetUtcNow(),
            },
            time.GetUtcNow());
        return file?.FileId ?? throw new InvalidOperationException($"transfer {transfer.TransferId} of {deviceId} did not complete");
    }

    /// <summary>Starts a file transfer of <paramref name="content"/> and stages its first <paramref name="chunks"/> chunks, leaving it under way; returns its transfer ID.</summary>
    public static async Task<string> StartTransferInStoreAsync(this TestServer server, string deviceId, string name, byte[] content, int chunks, int chunkSize = TransferLimits.MinChunkBytes)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(content);
        var (files, blobs, time) = Services(server);
        var transfer = await StartAsync(files, time, deviceId, NewId("t"), name, content, null, chunkSize);
        for (var index = 0; index < chunks; index++)
        {
            await StageAsync(files, blobs, time, transfer, content, index);
        }

        return transfer.TransferId;
    }

    private static (IFileStore Files, IBlobStore Blobs, TimeProvider Time) Services(TestServer server) =>
        (server.Host.Services.GetRequiredService<IFileStore>(), server.Host.Services.GetRequiredService<IBlobStore>(), server.Host.Services.GetRequiredService<TimeProvider>());

    private static async Task<TransferRecord> StartAsync(IFileStore files, TimeProvider time, string deviceId, string transferId, string name, byte[] content, string? contentType, int chunkSize)
    {
        var now = time.GetUtcNow();
        var transfer = new TransferRecord
        {
            DeviceId = deviceId,
            TransferId = transferId,
            Kind = TransferKinds.File,
            Name = name,
            ContentType = contentType,
            Size = content.Length,
            ChunkSize = chunkSize,
            ChunkCount = (int)Math.Max(1, ((long)content.Length + chunkSize - 1) / chunkSize),
            Sha256 = Convert.ToHexStringLower(SHA256.HashData(content)),
            StartedAt = now,
            UpdatedAt = now,
        };
        var outcome = await files.BeginTransferAsync(transfer, long.MaxValue);
        return outcome.Result == BeginTransferResult.Started ? outcome.Transfer! : throw new InvalidOperationException($"transfer {transferId} was not started: {outcome.Result}");
    }

    private static async Task StageAsync(IFileStore files, IBlobStore blobs, TimeProvider time, TransferRecord transfer, byte[] content, int index)
    {
        var offset = (long)index * transfer.ChunkSize;
        var length = (int)Math.Min(transfer.ChunkSize, content.Length - offset);
        await blobs.WriteChunkAsync(FolderBlobStore.KeyFor(transfer.DeviceId, transfer.TransferId), offset, content.AsMemory((int)offset, length));
        await files.RecordChunkAsync(transfer.DeviceId, transfer.TransferId, index, time.GetUtcNow());
    }

    private static string NewId(string prefix) => prefix + Guid.NewGuid().ToString("N")[..20];
}
