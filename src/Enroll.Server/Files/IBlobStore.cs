namespace Enroll.Server.Files;

/// <summary>
/// Where the bytes of transfers and files live (SPEC §2.7): a staging area that chunks are written into at their offsets,
/// and the stored files a completed transfer is moved to. <c>FolderBlobStore</c> keeps both in a folder of the data
/// directory; an object store (S3 multipart uploads map onto the same calls) can come later behind this interface. Several
/// server instances share one blob store (a shared folder, or an object store). Keys are opaque strings made of the
/// identifier characters and '/'.
/// </summary>
internal interface IBlobStore
{
    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="offset"/> of the staged transfer <paramref name="stagingKey"/>,
    /// creating it when absent; durable (flushed to the disk) when the task completes. Writing the same bytes again at the
    /// same offset is harmless.
    /// </summary>
    ValueTask WriteChunkAsync(string stagingKey, long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default);

    /// <summary>Opens the staged transfer for reading from its start (to verify its hash or store it as a message); null when there is none.</summary>
    Stream? OpenStaged(string stagingKey);

    /// <summary>
    /// Moves the staged transfer <paramref name="stagingKey"/> to the stored blob <paramref name="blobKey"/>, durably. When
    /// the staged transfer is gone but the blob exists (a move that completed before a crash), does nothing.
    /// </summary>
    Task CommitAsync(string stagingKey, string blobKey, CancellationToken cancellationToken = default);

    /// <summary>Removes a staged transfer; nothing when there is none.</summary>
    Task DeleteStagedAsync(string stagingKey, CancellationToken cancellationToken = default);

    /// <summary>Opens a stored blob for reading (seekable, for range requests); null when there is none.</summary>
    Stream? OpenRead(string blobKey);

    /// <summary>Removes a stored blob; nothing when there is none.</summary>
    Task DeleteAsync(string blobKey, CancellationToken cancellationToken = default);

    /// <summary>The staged transfers present (to find those the registry no longer knows).</summary>
    IEnumerable<string> ListStaged();
}
