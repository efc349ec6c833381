using Enroll.Protocol.Transfers;

namespace Enroll.Server.Registry;

/// <summary>
/// The files aggregate (SPEC §2.7): chunked transfers under way — which chunks of each the server holds — and the files
/// stored from completed ones, with their metadata. The bytes live in the <see cref="Files.IBlobStore"/>; this store
/// holds what is needed to decide about a chunk (new, duplicate, refused), to resume, to count a device's quota and to
/// list and serve files. Transfers are keyed by (Device ID, transfer ID): two devices may use the same transfer ID.
/// </summary>
internal interface IFileStore
{
    /// <summary>
    /// Starts a transfer, or returns the one already started under the same (Device ID, transfer ID) — whatever its state —
    /// unchanged. A new file transfer (<see cref="TransferKinds.File"/>) is refused with
    /// <see cref="BeginTransferResult.QuotaExceeded"/> when the device's stored files plus its file transfers under way plus
    /// this one's size would pass <paramref name="quotaBytes"/> (counted in the writing transaction, so concurrent starts
    /// never pass the quota); message transfers do not count against the quota.
    /// </summary>
    Task<BeginTransferOutcome> BeginTransferAsync(TransferRecord transfer, long quotaBytes, CancellationToken cancellationToken = default);

    /// <summary>The transfer, or null.</summary>
    Task<TransferRecord?> GetTransferAsync(string deviceId, string transferId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Records that chunk <paramref name="index"/> of a transfer in state <see cref="TransferStates.Receiving"/> is durably
    /// staged, at <paramref name="at"/> (which also becomes the transfer's last activity): the transfer's received count
    /// after it, and whether this chunk was new (false for one recorded before: a resend, to acknowledge and not write
    /// again). Null when the transfer is not receiving (unknown, complete or refused).
    /// </summary>
    Task<RecordChunkOutcome?> RecordChunkAsync(string deviceId, string transferId, int index, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>The indexes of the chunks recorded for the transfer, ascending (empty for an unknown one).</summary>
    Task<IReadOnlyList<int>> ReceivedChunksAsync(string deviceId, string transferId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks a receiving message transfer <see cref="TransferStates.Complete"/> at <paramref name="at"/> and forgets its
    /// chunk records (after the message was stored); false when it was not receiving.
    /// </summary>
    Task<bool> CompleteMessageTransferAsync(string deviceId, string transferId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// In one transaction: stores <paramref name="file"/> and marks its receiving transfer complete (with the file's ID),
    /// forgetting the chunk records. When the transfer is already complete, returns the file stored then and changes
    /// nothing (a completion retried after a crash or by a resent chunk). Null when the transfer is unknown or refused.
    /// </summary>
    Task<StoredFileRecord?> CompleteFileTransferAsync(StoredFileRecord file, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks a receiving transfer <see cref="TransferStates.Refused"/> with <paramref name="reason"/> at <paramref name="at"/>,
    /// forgetting its chunk records; false when it was not receiving.
    /// </summary>
    Task<bool> RefuseTransferAsync(string deviceId, string transferId, string reason, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes receiving transfers whose last activity is before <paramref name="idleBefore"/> — at most
    /// <paramref name="limit"/>, oldest activity first — with their chunk records, and returns them (so their staged bytes
    /// can be removed). Also removes finished transfers finished before <paramref name="finishedBefore"/>.
    /// </summary>
    Task<IReadOnlyList<TransferRecord>> RemoveExpiredTransfersAsync(DateTimeOffset idleBefore, DateTimeOffset finishedBefore, int limit, CancellationToken cancellationToken = default);

    /// <summary>Transfers in state <see cref="TransferStates.Receiving"/>, optionally of one device, oldest start first.</summary>
    Task<IReadOnlyList<TransferRecord>> ListReceivingTransfersAsync(string? deviceId, int limit, CancellationToken cancellationToken = default);

    /// <summary>The file, or null.</summary>
    Task<StoredFileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Files in the order they were stored (newest last), optionally of one device, <paramref name="limit"/> at a time after
    /// the file <paramref name="afterFileId"/> (the last of the previous page).
    /// </summary>
    Task<IReadOnlyList<StoredFileRecord>> ListFilesAsync(string? deviceId, int limit, string? afterFileId = null, CancellationToken cancellationToken = default);

    /// <summary>Deletes the file's record (freeing its bytes from the device's quota); the removed record, or null when there was none.</summary>
    Task<StoredFileRecord?> DeleteFileAsync(string fileId, CancellationToken cancellationToken = default);

    /// <summary>The bytes the device's stored files take, and those its file transfers under way will take.</summary>
    Task<DeviceFileUsage> FileUsageAsync(string deviceId, CancellationToken cancellationToken = default);
}

/// <summary>A chunked transfer as the registry stores it.</summary>
internal sealed record TransferRecord
{
    public required string DeviceId { get; init; }

    public required string TransferId { get; init; }

    /// <summary>One of <see cref="TransferKinds"/>.</summary>
    public required string Kind { get; init; }

    /// <summary>The file's name (files) or the message's stream (messages).</summary>
    public required string Name { get; init; }

    public string? ContentType { get; init; }

    /// <summary>A message's content encoding (<c>gzip</c>), applied to the whole.</summary>
    public string? ContentEncoding { get; init; }

    /// <summary>A message's ID (messages only).</summary>
    public string? MessageId { get; init; }

    /// <summary>When the device stored the message or file, if it said.</summary>
    public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>A message's custom properties as a JSON object (messages only).</summary>
    public string? PropertiesJson { get; init; }

    public required long Size { get; init; }

    public required int ChunkSize { get; init; }

    public required int ChunkCount { get; init; }

    /// <summary>SHA-256 of the whole, lowercase hexadecimal.</summary>
    public required string Sha256 { get; init; }

    /// <summary>One of <see cref="TransferStates"/> (never <see cref="TransferStates.Unknown"/>).</summary>
    public string State { get; init; } = TransferStates.Receiving;

    /// <summary>Why it was refused.</summary>
    public string? Reason { get; init; }

    /// <summary>Chunks recorded so far (all of them once complete).</summary>
    public int Received { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>The last chunk's arrival, or when it finished.</summary>
    public required DateTimeOffset UpdatedAt { get; init; }

    /// <summary>The stored file of a complete file transfer.</summary>
    public string? FileId { get; init; }
}

/// <summary>A file stored from a completed transfer.</summary>
internal sealed record StoredFileRecord
{
    /// <summary>The server's ID for it (<c>file_...</c>), used by the API.</summary>
    public required string FileId { get; init; }

    public required string DeviceId { get; init; }

    /// <summary>The transfer it came from.</summary>
    public required string TransferId { get; init; }

    public required string Name { get; init; }

    public string? ContentType { get; init; }

    public required long Size { get; init; }

    /// <summary>SHA-256 of the content, lowercase hexadecimal (the HTTP ETag).</summary>
    public required string Sha256 { get; init; }

    /// <summary>Where the bytes are in the blob store.</summary>
    public required string BlobKey { get; init; }

    /// <summary>When the device stored it, if it said.</summary>
    public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>When the server completed it.</summary>
    public required DateTimeOffset ReceivedAt { get; init; }
}

internal enum BeginTransferResult
{
    /// <summary>Started now.</summary>
    Started,

    /// <summary>Started before (the outcome carries it as stored, in whatever state).</summary>
    Exists,

    /// <summary>Not started: it would pass the device's quota.</summary>
    QuotaExceeded,
}

/// <summary>What <see cref="IFileStore.BeginTransferAsync"/> did; for a refusal, the usage it counted.</summary>
internal sealed record BeginTransferOutcome(BeginTransferResult Result, TransferRecord? Transfer, DeviceFileUsage? Usage = null);

/// <summary>What <see cref="IFileStore.RecordChunkAsync"/> did.</summary>
internal sealed record RecordChunkOutcome(bool IsNew, int Received, int ChunkCount);

/// <summary>A device's file bytes: stored, and reserved by its file transfers under way.</summary>
internal sealed record DeviceFileUsage(long StoredBytes, long ReceivingBytes)
{
    public long Total => StoredBytes + ReceivingBytes;
}
