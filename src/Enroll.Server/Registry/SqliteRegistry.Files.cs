namespace Enroll.Server.Registry;

// PLACEHOLDER-I14: replaced by the real implementation before anything merges to main.
internal sealed partial class SqliteRegistry
{
    private static NotSupportedException NotYet() => new("the files store of this registry is not built yet");

    public Task<BeginTransferOutcome> BeginTransferAsync(TransferRecord transfer, long quotaBytes, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<TransferRecord?> GetTransferAsync(string deviceId, string transferId, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<RecordChunkOutcome?> RecordChunkAsync(string deviceId, string transferId, int index, DateTimeOffset at, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<IReadOnlyList<int>> ReceivedChunksAsync(string deviceId, string transferId, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<bool> CompleteMessageTransferAsync(string deviceId, string transferId, DateTimeOffset at, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<StoredFileRecord?> CompleteFileTransferAsync(StoredFileRecord file, DateTimeOffset at, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<bool> RefuseTransferAsync(string deviceId, string transferId, string reason, DateTimeOffset at, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<IReadOnlyList<TransferRecord>> RemoveExpiredTransfersAsync(DateTimeOffset idleBefore, DateTimeOffset finishedBefore, int limit, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<IReadOnlyList<TransferRecord>> ListReceivingTransfersAsync(string? deviceId, int limit, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<StoredFileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<IReadOnlyList<StoredFileRecord>> ListFilesAsync(string? deviceId, int limit, string? afterFileId = null, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<StoredFileRecord?> DeleteFileAsync(string fileId, CancellationToken cancellationToken = default) => throw NotYet();

    public Task<DeviceFileUsage> FileUsageAsync(string deviceId, CancellationToken cancellationToken = default) => throw NotYet();
}
