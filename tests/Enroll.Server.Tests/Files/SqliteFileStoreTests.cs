using Enroll.Protocol.Transfers;
using Enroll.Server.Registry;
using Enroll.Testing;

namespace Enroll.Server.Tests.Files;

/// <summary>
/// The SQLite files aggregate on a real file: what the ingest relies on (quota counted in the writing transaction,
/// idempotent chunk records, atomic and idempotent completion, expiry). The shared contract suite holds both stores to
/// the rest.
/// </summary>
public sealed class SqliteFileStoreTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private readonly TempDirectory _folder = new("enroll-file-store");
    private SqliteRegistry _registry = null!;

    public Task InitializeAsync()
    {
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _registry.DisposeAsync();
        _folder.Dispose();
    }

    private static TransferRecord Transfer(string transferId, long size, string device = "dev-1", string kind = TransferKinds.File, int chunkSize = 1024) => new()
    {
        DeviceId = device,
        TransferId = transferId,
        Kind = kind,
        Name = "log.txt",
        Size = size,
        ChunkSize = chunkSize,
        ChunkCount = (int)Math.Max(1, (size + chunkSize - 1) / chunkSize),
        Sha256 = new string('a', 64),
        StartedAt = T0,
        UpdatedAt = T0,
    };

    private static StoredFileRecord File(TransferRecord transfer, string fileId) => new()
    {
        FileId = fileId,
        DeviceId = transfer.DeviceId,
        TransferId = transfer.TransferId,
        Name = transfer.Name,
        Size = transfer.Size,
        Sha256 = transfer.Sha256,
        BlobKey = $"{transfer.DeviceId}/{transfer.TransferId}",
        ReceivedAt = T0,
    };

    [Fact]
    public async Task BeginTransfer_ConcurrentStartsOverQuota_OnlyThoseThatFitStart()
    {
        var starts = Enumerable.Range(0, 10).Select(i => _registry.BeginTransferAsync(Transfer($"t{i}", 3000), quotaBytes: 10_000));

        var outcomes = await Task.WhenAll(starts);

        Assert.Equal(3, outcomes.Count(o => o.Result == BeginTransferResult.Started));
        Assert.Equal(7, outcomes.Count(o => o.Result == BeginTransferResult.QuotaExceeded));
        Assert.All(outcomes.Where(o => o.Result == BeginTransferResult.QuotaExceeded), o => Assert.Equal(9000, o.Usage!.Total));
        Assert.Equal(new DeviceFileUsage(0, 9000), await _registry.FileUsageAsync("dev-1"));
    }

    [Fact]
    public async Task BeginTransfer_MessageTransfer_DoesNotCountAgainstQuota()
    {
        var outcome = await _registry.BeginTransferAsync(Transfer("m1", 5000, kind: TransferKinds.Message), quotaBytes: 10);

        Assert.Equal(BeginTransferResult.Started, outcome.Result);
        Assert.Equal(new DeviceFileUsage(0, 0), await _registry.FileUsageAsync("dev-1"));
    }

    [Fact]
    public async Task BeginTransfer_SameIdAgain_ReturnsTheStoredOneUnchanged()
    {
        await _registry.BeginTransferAsync(Transfer("t1", 3000), long.MaxValue);
        await _registry.RecordChunkAsync("dev-1", "t1", 1, T0.AddSeconds(1));

        var again = await _registry.BeginTransferAsync(Transfer("t1", 9999) with { StartedAt = T0.AddHours(1) }, long.MaxValue);

        Assert.Equal(BeginTransferResult.Exists, again.Result);
        Assert.Equal(3000, again.Transfer!.Size);
        Assert.Equal(1, again.Transfer.Received);
        Assert.Equal(T0, again.Transfer.StartedAt);
    }

    [Fact]
    public async Task RecordChunk_Resend_IsNotNewAndCountedOnce()
    {
        await _registry.BeginTransferAsync(Transfer("t1", 3000), long.MaxValue);

        var first = await _registry.RecordChunkAsync("dev-1", "t1", 2, T0.AddSeconds(1));
        var resend = await _registry.RecordChunkAsync("dev-1", "t1", 2, T0.AddSeconds(2));
        var other = await _registry.RecordChunkAsync("dev-1", "t1", 0, T0.AddSeconds(3));

        Assert.Equal(new RecordChunkOutcome(true, 1, 3), first);
        Assert.Equal(new RecordChunkOutcome(false, 1, 3), resend);
        Assert.Equal(new RecordChunkOutcome(true, 2, 3), other);
        Assert.Equal([0, 2], await _registry.ReceivedChunksAsync("dev-1", "t1"));
        Assert.Equal(T0.AddSeconds(3), (await _registry.GetTransferAsync("dev-1", "t1"))!.UpdatedAt);
    }

    [Fact]
    public async Task RecordChunk_TransferNotReceiving_ReturnsNull()
    {
        await _registry.BeginTransferAsync(Transfer("t1", 3000), long.MaxValue);
        await _registry.RefuseTransferAsync("dev-1", "t1", "sha256 mismatch", T0);

        Assert.Null(await _registry.RecordChunkAsync("dev-1", "t1", 0, T0));
        Assert.Null(await _registry.RecordChunkAsync("dev-1", "unknown", 0, T0));
        Assert.Null(await _registry.RecordChunkAsync("dev-2", "t1", 0, T0));
    }

    [Fact]
    public async Task CompleteFileTransfer_TwiceWithDifferentIds_StoresOneFileAndReturnsItBothTimes()
    {
        var transfer = (await _registry.BeginTransferAsync(Transfer("t1", 2048), 10_000)).Transfer!;
        await _registry.RecordChunkAsync("dev-1", "t1", 0, T0);
        await _registry.RecordChunkAsync("dev-1", "t1", 1, T0);

        var first = await _registry.CompleteFileTransferAsync(File(transfer, "file_a"), T0.AddSeconds(5));
        var again = await _registry.CompleteFileTransferAsync(File(transfer, "file_b"), T0.AddSeconds(9));

        Assert.Equal("file_a", first!.FileId);
        Assert.Equal(first, again);
        var stored = await _registry.GetTransferAsync("dev-1", "t1");
        Assert.Equal(TransferStates.Complete, stored!.State);
        Assert.Equal("file_a", stored.FileId);
        Assert.Equal(2, stored.Received);
        Assert.Equal(T0.AddSeconds(5), stored.UpdatedAt);
        Assert.Empty(await _registry.ReceivedChunksAsync("dev-1", "t1"));
        Assert.Single(await _registry.ListFilesAsync("dev-1", 10));

        // Counted once in the quota: as a stored file, no longer as a transfer under way.
        Assert.Equal(new DeviceFileUsage(2048, 0), await _registry.FileUsageAsync("dev-1"));
    }

    [Fact]
    public async Task CompleteFileTransfer_RefusedOrUnknown_ReturnsNullAndStoresNothing()
    {
        var transfer = (await _registry.BeginTransferAsync(Transfer("t1", 2048), 10_000)).Transfer!;
        await _registry.RefuseTransferAsync("dev-1", "t1", "sha256 mismatch", T0);

        Assert.Null(await _registry.CompleteFileTransferAsync(File(transfer, "file_a"), T0));
        Assert.Null(await _registry.CompleteFileTransferAsync(File(transfer with { TransferId = "nope" }, "file_b"), T0));
        Assert.Empty(await _registry.ListFilesAsync(null, 10));
        Assert.Equal("sha256 mismatch", (await _registry.GetTransferAsync("dev-1", "t1"))!.Reason);
    }

    [Fact]
    public async Task DeleteFile_FreesQuota()
    {
        var transfer = (await _registry.BeginTransferAsync(Transfer("t1", 6000), 10_000)).Transfer!;
        await _registry.CompleteFileTransferAsync(File(transfer, "file_a"), T0);
        Assert.Equal(BeginTransferResult.QuotaExceeded, (await _registry.BeginTransferAsync(Transfer("t2", 6000), 10_000)).Result);

        Assert.NotNull(await _registry.DeleteFileAsync("file_a"));

        Assert.Null(await _registry.DeleteFileAsync("file_a"));
        Assert.Equal(BeginTransferResult.Started, (await _registry.BeginTransferAsync(Transfer("t2", 6000), 10_000)).Result);
    }

    [Fact]
    public async Task RemoveExpiredTransfers_IdleReceivingAndOldFinished_RemovedOldestFirstWithinLimit()
    {
        await _registry.BeginTransferAsync(Transfer("old", 3000), long.MaxValue);
        await _registry.BeginTransferAsync(Transfer("older", 3000), long.MaxValue);
        await _registry.BeginTransferAsync(Transfer("fresh", 3000), long.MaxValue);
        await _registry.BeginTransferAsync(Transfer("done", 3000), long.MaxValue);
        await _registry.RecordChunkAsync("dev-1", "old", 0, T0.AddMinutes(20));
        await _registry.RecordChunkAsync("dev-1", "older", 0, T0.AddMinutes(10));
        await _registry.RecordChunkAsync("dev-1", "fresh", 0, T0.AddHours(2));
        await _registry.RefuseTransferAsync("dev-1", "done", "no", T0.AddMinutes(1));

        var removed = await _registry.RemoveExpiredTransfersAsync(T0.AddHours(1), T0.AddMinutes(5), limit: 1);
        var rest = await _registry.RemoveExpiredTransfersAsync(T0.AddHours(1), T0.AddMinutes(5), limit: 10);

        Assert.Equal(["older"], removed.Select(t => t.TransferId));
        Assert.Equal(["old"], rest.Select(t => t.TransferId));
        Assert.Null(await _registry.GetTransferAsync("dev-1", "old"));
        Assert.Null(await _registry.GetTransferAsync("dev-1", "done"));
        Assert.Empty(await _registry.ReceivedChunksAsync("dev-1", "old"));
        Assert.Equal(["fresh"], (await _registry.ListReceivingTransfersAsync(null, 10)).Select(t => t.TransferId));
    }

    [Fact]
    public async Task ListFiles_PagesInStoredOrder()
    {
        foreach (var i in Enumerable.Range(0, 5))
        {
            var transfer = (await _registry.BeginTransferAsync(Transfer($"t{i}", 10, device: i % 2 == 0 ? "dev-1" : "dev-2"), long.MaxValue)).Transfer!;
            await _registry.CompleteFileTransferAsync(File(transfer, $"file_{4 - i}"), T0);
        }

        var page1 = await _registry.ListFilesAsync(null, 2);
        var page2 = await _registry.ListFilesAsync(null, 2, page1[^1].FileId);
        var dev1 = await _registry.ListFilesAsync("dev-1", 10);

        Assert.Equal(["file_4", "file_3"], page1.Select(f => f.FileId));
        Assert.Equal(["file_2", "file_1"], page2.Select(f => f.FileId));
        Assert.Equal(["file_4", "file_2", "file_0"], dev1.Select(f => f.FileId));
    }
}
