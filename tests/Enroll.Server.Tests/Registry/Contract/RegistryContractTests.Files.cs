using Enroll.Protocol.Transfers;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private const long Quota = 10_000;

    [Fact]
    public async Task BeginTransfer_New_IsStartedReceiving_AndReadBackWithEveryField()
    {
        var message = Transfer("dev-a", "t-msg", 5000, TransferKinds.Message) with
        {
            ContentType = "application/json",
            ContentEncoding = "gzip",
            MessageId = "m-1",
            CreatedAt = T0.AddSeconds(-3),
            PropertiesJson = """{"unit":"C"}""",
        };
        var bare = Transfer("dev-a", "t-file", 1) with { ContentType = null };

        var started = await Registry.BeginTransferAsync(message, Quota);
        var startedFile = await Registry.BeginTransferAsync(bare, Quota);

        Assert.Equal(BeginTransferResult.Started, started.Result);
        Assert.Equal(message, started.Transfer);
        Assert.Equal(BeginTransferResult.Started, startedFile.Result);
        Assert.Equal(message, await Registry.GetTransferAsync("dev-a", "t-msg"));
        var file = await Registry.GetTransferAsync("dev-a", "t-file");
        Assert.Equal(bare, file);
        Assert.Equal(TransferStates.Receiving, file!.State);
        Assert.Equal(0, file.Received);
        Assert.Null(await Registry.GetTransferAsync("dev-a", "t-none"));
        Assert.Null(await Registry.GetTransferAsync("dev-b", "t-msg"));
    }

    [Fact]
    public async Task BeginTransfer_Again_ReturnsTheStoredOneUnchanged_WhateverItsState()
    {
        var transfer = Transfer("dev-a", "t-1", 3000);
        await Registry.BeginTransferAsync(transfer, Quota);
        await Registry.RecordChunkAsync("dev-a", "t-1", 0, Now);

        var again = await Registry.BeginTransferAsync(transfer with { Name = "other.bin", Size = 9000, ChunkCount = 9, StartedAt = Now.AddMinutes(1) }, Quota);
        await Registry.RefuseTransferAsync("dev-a", "t-1", "sha256 mismatch", Now);
        var afterRefusal = await Registry.BeginTransferAsync(transfer, Quota);

        Assert.Equal(BeginTransferResult.Exists, again.Result);
        Assert.Equal(transfer with { Received = 1 }, again.Transfer);
        Assert.Equal(BeginTransferResult.Exists, afterRefusal.Result);
        Assert.Equal(TransferStates.Refused, afterRefusal.Transfer!.State);
        Assert.Equal("sha256 mismatch", afterRefusal.Transfer.Reason);
    }

    [Fact]
    public async Task BeginTransfer_FileThatWouldPassTheQuota_IsRefusedWithTheUsageCounted_MessagesDoNotCount()
    {
        await StoreFileAsync("dev-a", "t-stored", 4000);
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-receiving", 3000), Quota);
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-message", 9000, TransferKinds.Message), Quota);

        var over = await Registry.BeginTransferAsync(Transfer("dev-a", "t-over", 3001), Quota);
        var exact = await Registry.BeginTransferAsync(Transfer("dev-a", "t-exact", 3000), Quota);
        var message = await Registry.BeginTransferAsync(Transfer("dev-a", "t-message-2", 9000, TransferKinds.Message), Quota);
        var otherDevice = await Registry.BeginTransferAsync(Transfer("dev-b", "t-over", 9000), Quota);

        Assert.Equal(BeginTransferResult.QuotaExceeded, over.Result);
        Assert.Null(over.Transfer);
        Assert.Equal(new DeviceFileUsage(4000, 3000), over.Usage);
        Assert.Null(await Registry.GetTransferAsync("dev-a", "t-over"));
        Assert.Equal(BeginTransferResult.Started, exact.Result);
        Assert.Equal(BeginTransferResult.Started, message.Result);
        Assert.Equal(BeginTransferResult.Started, otherDevice.Result);
        Assert.Equal(new DeviceFileUsage(4000, 6000), await Registry.FileUsageAsync("dev-a"));
        Assert.Equal(BeginTransferResult.QuotaExceeded, (await Registry.BeginTransferAsync(Transfer("dev-a", "t-one-more", 1), Quota)).Result);
    }

    [Fact]
    public async Task BeginTransfer_ConcurrentFileStarts_NeverPassTheQuota()
    {
        // Connections warmed first, so the starts below overlap rather than queue behind connection setup: 8 devices, 8
        // starts each at once, room for 3 per device.
        await ConcurrentlyAsync(64, i => Registry.FileUsageAsync($"dev-{i % 8}"));

        var outcomes = await ConcurrentlyAsync(64, i => Registry.BeginTransferAsync(Transfer($"dev-{i % 8}", $"t-{i}", 1000), 3000));

        for (var d = 0; d < 8; d++)
        {
            var device = $"dev-{d}";
            var mine = outcomes.Where((_, i) => i % 8 == d).ToList();
            Assert.Equal(3, mine.Count(o => o.Result == BeginTransferResult.Started));
            Assert.Equal(5, mine.Count(o => o.Result == BeginTransferResult.QuotaExceeded));
            Assert.Equal(new DeviceFileUsage(0, 3000), await Registry.FileUsageAsync(device));
            Assert.Equal(3, (await Registry.ListReceivingTransfersAsync(device, 100)).Count);
        }
    }

    [Fact]
    public async Task BeginTransfer_SameTransferStartedConcurrently_IsStartedOnce()
    {
        var transfer = Transfer("dev-a", "t-1", 3000);

        var outcomes = await ConcurrentlyAsync(10, _ => Registry.BeginTransferAsync(transfer, Quota));

        Assert.Equal(1, outcomes.Count(o => o.Result == BeginTransferResult.Started));
        Assert.All(outcomes.Where(o => o.Result != BeginTransferResult.Started), o => Assert.Equal(BeginTransferResult.Exists, o.Result));
        Assert.Equal(new DeviceFileUsage(0, 3000), await Registry.FileUsageAsync("dev-a"));
    }

    [Fact]
    public async Task RecordChunk_New_IsCounted_AResendIsNotNew_AndBothMoveTheLastActivity()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 3000), Quota);

        var first = await Registry.RecordChunkAsync("dev-a", "t-1", 2, Now.AddSeconds(1));
        var second = await Registry.RecordChunkAsync("dev-a", "t-1", 0, Now.AddSeconds(2));
        var resend = await Registry.RecordChunkAsync("dev-a", "t-1", 2, Now.AddSeconds(3));

        Assert.Equal(new RecordChunkOutcome(true, 1, 3), first);
        Assert.Equal(new RecordChunkOutcome(true, 2, 3), second);
        Assert.Equal(new RecordChunkOutcome(false, 2, 3), resend);
        var stored = await Registry.GetTransferAsync("dev-a", "t-1");
        Assert.Equal(2, stored!.Received);
        Assert.Equal(Now.AddSeconds(3), stored.UpdatedAt);
        Assert.Equal(T0, stored.StartedAt);
        Assert.Equal([0, 2], await Registry.ReceivedChunksAsync("dev-a", "t-1"));
    }

    [Fact]
    public async Task RecordChunk_ConcurrentChunksAndResends_CountEachChunkOnce()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 20 * 1024), Quota * 10);

        var outcomes = await ConcurrentlyAsync(40, i => Registry.RecordChunkAsync("dev-a", "t-1", i % 20, Now));

        Assert.Equal(20, outcomes.Count(o => o!.IsNew));
        Assert.Contains(outcomes, o => o!.Received == 20);
        Assert.Equal(20, (await Registry.GetTransferAsync("dev-a", "t-1"))!.Received);
        Assert.Equal(Enumerable.Range(0, 20), await Registry.ReceivedChunksAsync("dev-a", "t-1"));
    }

    [Fact]
    public async Task RecordChunk_OfATransferNotReceiving_IsNull()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-refused", 3000), Quota);
        await Registry.RefuseTransferAsync("dev-a", "t-refused", "bad", Now);
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-message", 3000, TransferKinds.Message), Quota);
        await Registry.CompleteMessageTransferAsync("dev-a", "t-message", Now);
        await StoreFileAsync("dev-a", "t-file", 3000);

        Assert.Null(await Registry.RecordChunkAsync("dev-a", "t-unknown", 0, Now));
        Assert.Null(await Registry.RecordChunkAsync("dev-a", "t-refused", 0, Now));
        Assert.Null(await Registry.RecordChunkAsync("dev-a", "t-message", 0, Now));
        Assert.Null(await Registry.RecordChunkAsync("dev-a", "t-file", 0, Now));
        Assert.Null(await Registry.RecordChunkAsync("dev-b", "t-file", 0, Now));
        Assert.Empty(await Registry.ReceivedChunksAsync("dev-a", "t-refused"));
        Assert.Empty(await Registry.ReceivedChunksAsync("dev-a", "t-unknown"));
    }

    [Fact]
    public async Task CompleteMessageTransfer_MarksItComplete_ForgetsItsChunks_AndOnlyOnce()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 2048, TransferKinds.Message), Quota);
        await Registry.RecordChunkAsync("dev-a", "t-1", 0, Now);
        await Registry.RecordChunkAsync("dev-a", "t-1", 1, Now);
        Clock.Advance(TimeSpan.FromSeconds(5));

        var completed = await Registry.CompleteMessageTransferAsync("dev-a", "t-1", Now);
        var again = await Registry.CompleteMessageTransferAsync("dev-a", "t-1", Now);

        Assert.True(completed);
        Assert.False(again);
        Assert.False(await Registry.CompleteMessageTransferAsync("dev-a", "t-unknown", Now));
        var stored = await Registry.GetTransferAsync("dev-a", "t-1");
        Assert.Equal(TransferStates.Complete, stored!.State);
        Assert.Equal(2, stored.Received);
        Assert.Equal(Now, stored.UpdatedAt);
        Assert.Empty(await Registry.ReceivedChunksAsync("dev-a", "t-1"));
        Assert.Empty(await Registry.ListReceivingTransfersAsync("dev-a", 10));
    }

    [Fact]
    public async Task CompleteFileTransfer_StoresTheFileAndCompletesTheTransfer_UsageMovesFromReceivingToStored()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 3000), Quota);
        for (var i = 0; i < 3; i++)
        {
            await Registry.RecordChunkAsync("dev-a", "t-1", i, Now);
        }

        Assert.Equal(new DeviceFileUsage(0, 3000), await Registry.FileUsageAsync("dev-a"));
        Clock.Advance(TimeSpan.FromSeconds(2));
        var file = FileOf("dev-a", "t-1", 3000) with { ContentType = "text/plain", CreatedAt = T0.AddMinutes(-1) };

        var stored = await Registry.CompleteFileTransferAsync(file, Now);

        Assert.Equal(file, stored);
        Assert.Equal(file, await Registry.GetFileAsync(file.FileId));
        var transfer = await Registry.GetTransferAsync("dev-a", "t-1");
        Assert.Equal(TransferStates.Complete, transfer!.State);
        Assert.Equal(file.FileId, transfer.FileId);
        Assert.Equal(3, transfer.Received);
        Assert.Equal(Now, transfer.UpdatedAt);
        Assert.Empty(await Registry.ReceivedChunksAsync("dev-a", "t-1"));
        Assert.Equal(new DeviceFileUsage(3000, 0), await Registry.FileUsageAsync("dev-a"));
    }

    [Fact]
    public async Task CompleteFileTransfer_Retried_ReturnsTheFileStoredFirst_AndStoresNothingMore()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 3000), Quota);
        var first = FileOf("dev-a", "t-1", 3000);
        await Registry.CompleteFileTransferAsync(first, Now);

        var retried = await Registry.CompleteFileTransferAsync(FileOf("dev-a", "t-1", 3000), Now.AddSeconds(9));

        Assert.Equal(first, retried);
        Assert.Equal([first], await Registry.ListFilesAsync(null, 10));
        Assert.Equal(T0, (await Registry.GetTransferAsync("dev-a", "t-1"))!.UpdatedAt);
    }

    [Fact]
    public async Task CompleteFileTransfer_Concurrently_StoresOneFile()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 3000), Quota);

        var results = await ConcurrentlyAsync(8, _ => Registry.CompleteFileTransferAsync(FileOf("dev-a", "t-1", 3000), Now));

        var stored = Assert.Single(await Registry.ListFilesAsync(null, 10));
        Assert.All(results, r => Assert.Equal(stored, r));
        Assert.Equal(new DeviceFileUsage(3000, 0), await Registry.FileUsageAsync("dev-a"));
    }

    [Fact]
    public async Task CompleteFileTransfer_OfAnUnknownOrRefusedTransfer_IsNull_AndStoresNothing()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-refused", 3000), Quota);
        await Registry.RefuseTransferAsync("dev-a", "t-refused", "bad", Now);

        Assert.Null(await Registry.CompleteFileTransferAsync(FileOf("dev-a", "t-unknown", 3000), Now));
        Assert.Null(await Registry.CompleteFileTransferAsync(FileOf("dev-a", "t-refused", 3000), Now));
        Assert.Empty(await Registry.ListFilesAsync(null, 10));
        Assert.Equal(TransferStates.Refused, (await Registry.GetTransferAsync("dev-a", "t-refused"))!.State);
    }

    [Fact]
    public async Task RefuseTransfer_KeepsTheReason_ForgetsTheChunks_FreesTheQuota_AndOnlyOnce()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 3000), Quota);
        await Registry.RecordChunkAsync("dev-a", "t-1", 0, Now);
        await StoreFileAsync("dev-a", "t-done", 1000);
        Clock.Advance(TimeSpan.FromSeconds(4));

        var refused = await Registry.RefuseTransferAsync("dev-a", "t-1", "sha256 mismatch", Now);
        var again = await Registry.RefuseTransferAsync("dev-a", "t-1", "other reason", Now.AddSeconds(1));

        Assert.True(refused);
        Assert.False(again);
        Assert.False(await Registry.RefuseTransferAsync("dev-a", "t-done", "late", Now));
        Assert.False(await Registry.RefuseTransferAsync("dev-a", "t-unknown", "late", Now));
        var stored = await Registry.GetTransferAsync("dev-a", "t-1");
        Assert.Equal(TransferStates.Refused, stored!.State);
        Assert.Equal("sha256 mismatch", stored.Reason);
        Assert.Equal(Now, stored.UpdatedAt);
        Assert.Empty(await Registry.ReceivedChunksAsync("dev-a", "t-1"));
        Assert.Equal(TransferStates.Complete, (await Registry.GetTransferAsync("dev-a", "t-done"))!.State);
        Assert.Equal(new DeviceFileUsage(1000, 0), await Registry.FileUsageAsync("dev-a"));
    }

    [Fact]
    public async Task RemoveExpiredTransfers_RemovesIdleReceivingOnesOldestFirstUpToTheLimit_AndOldFinishedOnes()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-old-finished", 1000), Quota);
        await Registry.RefuseTransferAsync("dev-a", "t-old-finished", "bad", Now);
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-idle-1", 2048), Quota);
        await Registry.RecordChunkAsync("dev-a", "t-idle-1", 0, Now);
        Clock.Advance(TimeSpan.FromMinutes(1));
        await Registry.BeginTransferAsync(Transfer("dev-b", "t-idle-2", 1000, TransferKinds.Message), Quota);
        Clock.Advance(TimeSpan.FromMinutes(1));
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-idle-3", 1000), Quota);
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-active", 2048), Quota);
        await StoreFileAsync("dev-a", "t-recent-finished", 1000);
        Clock.Advance(TimeSpan.FromMinutes(1));
        await Registry.RecordChunkAsync("dev-a", "t-active", 0, Now);
        var idleBefore = Now;
        var finishedBefore = T0.AddSeconds(30);

        var first = await Registry.RemoveExpiredTransfersAsync(idleBefore, finishedBefore, 2);
        var second = await Registry.RemoveExpiredTransfersAsync(idleBefore, finishedBefore, 2);
        var third = await Registry.RemoveExpiredTransfersAsync(idleBefore, finishedBefore, 2);

        Assert.Equal(["t-idle-1", "t-idle-2"], first.Select(t => t.TransferId));
        Assert.Equal("dev-b", first[1].DeviceId);
        Assert.Equal(["t-idle-3"], second.Select(t => t.TransferId));
        Assert.Empty(third);
        Assert.Null(await Registry.GetTransferAsync("dev-a", "t-idle-1"));
        Assert.Empty(await Registry.ReceivedChunksAsync("dev-a", "t-idle-1"));
        Assert.Null(await Registry.GetTransferAsync("dev-a", "t-old-finished"));
        Assert.NotNull(await Registry.GetTransferAsync("dev-a", "t-active"));
        Assert.Equal([0], await Registry.ReceivedChunksAsync("dev-a", "t-active"));
        Assert.Equal(TransferStates.Complete, (await Registry.GetTransferAsync("dev-a", "t-recent-finished"))!.State);
        Assert.Single(await Registry.ListFilesAsync("dev-a", 10));
        Assert.Equal(new DeviceFileUsage(1000, 2048), await Registry.FileUsageAsync("dev-a"));
    }

    [Fact]
    public async Task ListReceivingTransfers_AreTheOnesUnderWay_OldestStartFirst_ByDevice_UpToTheLimit()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 1000), Quota);
        Clock.Advance(TimeSpan.FromSeconds(1));
        await Registry.BeginTransferAsync(Transfer("dev-b", "t-2", 1000, TransferKinds.Message), Quota);
        Clock.Advance(TimeSpan.FromSeconds(1));
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-3", 1000), Quota);
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-refused", 1000), Quota);
        await Registry.RefuseTransferAsync("dev-a", "t-refused", "bad", Now);
        await StoreFileAsync("dev-a", "t-done", 1000);
        await Registry.RecordChunkAsync("dev-a", "t-1", 0, Now.AddSeconds(5));

        Assert.Equal(["t-1", "t-2", "t-3"], (await Registry.ListReceivingTransfersAsync(null, 10)).Select(t => t.TransferId));
        Assert.Equal(["t-1", "t-3"], (await Registry.ListReceivingTransfersAsync("dev-a", 10)).Select(t => t.TransferId));
        Assert.Equal(["t-1", "t-2"], (await Registry.ListReceivingTransfersAsync(null, 2)).Select(t => t.TransferId));
        Assert.Equal(1, (await Registry.ListReceivingTransfersAsync("dev-a", 1))[0].Received);
        Assert.Empty(await Registry.ListReceivingTransfersAsync("dev-none", 10));
    }

    [Fact]
    public async Task Files_AreListedInTheOrderStored_InPagesAfterAFile_ByDevice()
    {
        var files = new List<StoredFileRecord>();
        for (var n = 0; n < 7; n++)
        {
            Clock.Advance(TimeSpan.FromSeconds(1));
            files.Add(await StoreFileAsync(n % 2 == 0 ? "dev-even" : "dev-odd", $"t-{n}", 100 + n));
        }

        var first = await Registry.ListFilesAsync(null, 3);
        var second = await Registry.ListFilesAsync(null, 3, first[^1].FileId);
        var third = await Registry.ListFilesAsync(null, 3, second[^1].FileId);
        var end = await Registry.ListFilesAsync(null, 3, third[^1].FileId);
        var even = await Registry.ListFilesAsync("dev-even", 3);
        var evenNext = await Registry.ListFilesAsync("dev-even", 3, even[^1].FileId);

        Assert.Equal(files[..3], first);
        Assert.Equal(files[3..6], second);
        Assert.Equal(files[6..], third);
        Assert.Empty(end);
        Assert.Equal(["t-0", "t-2", "t-4"], even.Select(f => f.TransferId));
        Assert.Equal(["t-6"], evenNext.Select(f => f.TransferId));
        Assert.Empty(await Registry.ListFilesAsync("dev-none", 10));
    }

    [Fact]
    public async Task DeleteFile_RemovesTheRecordAndFreesItsQuota_ThenThereIsNothingToDelete()
    {
        var kept = await StoreFileAsync("dev-a", "t-kept", 2000);
        var deleted = await StoreFileAsync("dev-a", "t-deleted", 3000);

        var removed = await Registry.DeleteFileAsync(deleted.FileId);

        Assert.Equal(deleted, removed);
        Assert.Null(await Registry.GetFileAsync(deleted.FileId));
        Assert.Null(await Registry.DeleteFileAsync(deleted.FileId));
        Assert.Null(await Registry.DeleteFileAsync("file-none"));
        Assert.Equal([kept], await Registry.ListFilesAsync("dev-a", 10));
        Assert.Equal(new DeviceFileUsage(2000, 0), await Registry.FileUsageAsync("dev-a"));
        Assert.Equal(BeginTransferResult.Started, (await Registry.BeginTransferAsync(Transfer("dev-a", "t-next", Quota - 2000), Quota)).Result);
    }

    [Fact]
    public async Task FileUsage_OfADeviceWithoutFiles_IsZero()
    {
        await StoreFileAsync("dev-a", "t-1", 2000);

        Assert.Equal(new DeviceFileUsage(0, 0), await Registry.FileUsageAsync("dev-b"));
        Assert.Equal(0, (await Registry.FileUsageAsync("dev-b")).Total);
        Assert.Equal(2000, (await Registry.FileUsageAsync("dev-a")).Total);
    }

    [Fact]
    public async Task Transfers_OfTwoDevicesWithTheSameTransferId_AreIndependent()
    {
        await Registry.BeginTransferAsync(Transfer("dev-a", "t-1", 3000), Quota);
        var other = await Registry.BeginTransferAsync(Transfer("dev-b", "t-1", 2048) with { Name = "b.bin" }, Quota);
        await Registry.RecordChunkAsync("dev-a", "t-1", 0, Now);
        await Registry.RecordChunkAsync("dev-a", "t-1", 1, Now);
        await Registry.RecordChunkAsync("dev-b", "t-1", 1, Now);

        var fileA = await Registry.CompleteFileTransferAsync(FileOf("dev-a", "t-1", 3000), Now);
        var lastOfB = await Registry.RecordChunkAsync("dev-b", "t-1", 0, Now);

        Assert.Equal(BeginTransferResult.Started, other.Result);
        Assert.NotNull(fileA);
        Assert.Equal(new RecordChunkOutcome(true, 2, 2), lastOfB);
        Assert.Equal([0, 1], await Registry.ReceivedChunksAsync("dev-b", "t-1"));
        Assert.Equal("b.bin", (await Registry.GetTransferAsync("dev-b", "t-1"))!.Name);
        Assert.True(await Registry.RefuseTransferAsync("dev-b", "t-1", "bad", Now));
        Assert.Equal(TransferStates.Complete, (await Registry.GetTransferAsync("dev-a", "t-1"))!.State);
        Assert.Equal(new DeviceFileUsage(0, 0), await Registry.FileUsageAsync("dev-b"));
    }

    /// <summary>A receiving transfer started now, consistently shaped (<see cref="TransferLimits.CheckShape"/>).</summary>
    private protected TransferRecord Transfer(string deviceId, string transferId, long size, string kind = TransferKinds.File, int chunkSize = TransferLimits.MinChunkBytes) => new()
    {
        DeviceId = deviceId,
        TransferId = transferId,
        Kind = kind,
        Name = kind == TransferKinds.File ? "trace.bin" : "telemetry",
        ContentType = "application/octet-stream",
        Size = size,
        ChunkSize = chunkSize,
        ChunkCount = (int)Math.Max(1, (size + chunkSize - 1) / chunkSize),
        Sha256 = new string('a', 64),
        StartedAt = Now,
        UpdatedAt = Now,
    };

    /// <summary>The file a completed transfer stores, with a fresh file ID.</summary>
    private protected StoredFileRecord FileOf(string deviceId, string transferId, long size) => new()
    {
        FileId = NewId("file"),
        DeviceId = deviceId,
        TransferId = transferId,
        Name = "trace.bin",
        Size = size,
        Sha256 = new string('b', 64),
        BlobKey = $"{deviceId}/{transferId}",
        ReceivedAt = Now,
    };

    /// <summary>A file stored as the ingest stores one: a transfer started and completed.</summary>
    private protected async Task<StoredFileRecord> StoreFileAsync(string deviceId, string transferId, long size)
    {
        Assert.Equal(BeginTransferResult.Started, (await Registry.BeginTransferAsync(Transfer(deviceId, transferId, size), long.MaxValue)).Result);
        return (await Registry.CompleteFileTransferAsync(FileOf(deviceId, transferId, size), Now))!;
    }
}
