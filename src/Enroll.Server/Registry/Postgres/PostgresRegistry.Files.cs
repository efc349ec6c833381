using Enroll.Protocol.Transfers;
using Npgsql;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    /// <summary>
    /// The first key of the two-key advisory locks that serialise one device's quota checks (the second is a hash of the
    /// Device ID). Two-key locks never collide with the single-key migration lock.
    /// </summary>
    private const int FileQuotaLockClass = 0x656e72; // "enr"

    public Task<BeginTransferOutcome> BeginTransferAsync(TransferRecord transfer, long quotaBytes, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                var isFile = transfer.Kind == TransferKinds.File;
                if (isFile)
                {
                    // Held until the commit: the device's next start counts after this one's row is visible, so two
                    // concurrent starts cannot both fit in the room left for one. Devices without a registry row (tests,
                    // a device deleted mid-upload) are locked the same way, which a FOR UPDATE on devices would not do.
                    await ExecuteAsync(connection, transaction, "SELECT pg_advisory_xact_lock($1, hashtext($2))", cancellationToken, FileQuotaLockClass, transfer.DeviceId).ConfigureAwait(false);
                }

                if (await TransferInAsync(connection, transaction, transfer.DeviceId, transfer.TransferId, cancellationToken).ConfigureAwait(false) is { } existing)
                {
                    return (new BeginTransferOutcome(BeginTransferResult.Exists, existing), End.Rollback);
                }

                if (isFile)
                {
                    var usage = await UsageInAsync(connection, transaction, transfer.DeviceId, cancellationToken).ConfigureAwait(false);
                    if (usage.Total + transfer.Size > quotaBytes)
                    {
                        return (new BeginTransferOutcome(BeginTransferResult.QuotaExceeded, null, usage), End.Rollback);
                    }
                }

                var started = transfer with { State = TransferStates.Receiving, Reason = null, Received = 0, FileId = null };
                var inserted = await ExecuteAsync(
                    connection,
                    transaction,
                    $"""
                    INSERT INTO transfers ({TransferColumns})
                    VALUES ($1, $2, $3, $4, $5::text, $6::text, $7::text, $8::bigint, $9::text, $10, $11, $12, $13, $14, NULL, 0, $15, $16, NULL)
                    ON CONFLICT (device_id, transfer_id) DO NOTHING
                    """,
                    cancellationToken,
                    started.DeviceId,
                    started.TransferId,
                    started.Kind,
                    started.Name,
                    started.ContentType,
                    started.ContentEncoding,
                    started.MessageId,
                    ToUnix(started.CreatedAt),
                    started.PropertiesJson,
                    started.Size,
                    started.ChunkSize,
                    started.ChunkCount,
                    started.Sha256,
                    started.State,
                    ToUnix(started.StartedAt),
                    ToUnix(started.UpdatedAt)).ConfigureAwait(false);

                // A message transfer takes no lock: a concurrent start of the same one won the key, and the next run reads it.
                return inserted == 1 ? (new BeginTransferOutcome(BeginTransferResult.Started, started), End.Commit) : (new BeginTransferOutcome(BeginTransferResult.Exists, null), End.Retry);
            },
            cancellationToken);

    public async Task<TransferRecord?> GetTransferAsync(string deviceId, string transferId, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {TransferColumns} FROM transfers WHERE device_id = $1 AND transfer_id = $2", ReadTransfer, cancellationToken, deviceId, transferId).ConfigureAwait(false)).FirstOrDefault();

    public Task<RecordChunkOutcome?> RecordChunkAsync(string deviceId, string transferId, int index, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync<RecordChunkOutcome?>(
            async (connection, transaction) =>
            {
                // The row lock orders concurrent chunks of one transfer, so the received count is exact; and a completion
                // or refusal that takes the lock first leaves nothing to record into.
                var transfer = await TransferInAsync(connection, transaction, deviceId, transferId, cancellationToken, forUpdate: true).ConfigureAwait(false);
                if (transfer is not { State: TransferStates.Receiving })
                {
                    return (null, End.Rollback);
                }

                var isNew = await ExecuteAsync(
                    connection,
                    transaction,
                    "INSERT INTO transfer_chunks (device_id, transfer_id, chunk_index) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    cancellationToken,
                    deviceId,
                    transferId,
                    index).ConfigureAwait(false) == 1;
                var received = transfer.Received + (isNew ? 1 : 0);
                await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE transfers SET received = $3, updated_at = $4 WHERE device_id = $1 AND transfer_id = $2",
                    cancellationToken,
                    deviceId,
                    transferId,
                    received,
                    ToUnix(at)).ConfigureAwait(false);
                return (new RecordChunkOutcome(isNew, received, transfer.ChunkCount), End.Commit);
            },
            cancellationToken);

    public async Task<IReadOnlyList<int>> ReceivedChunksAsync(string deviceId, string transferId, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            "SELECT chunk_index FROM transfer_chunks WHERE device_id = $1 AND transfer_id = $2 ORDER BY chunk_index",
            r => r.GetInt32(0),
            cancellationToken,
            deviceId,
            transferId).ConfigureAwait(false);

    public Task<bool> CompleteMessageTransferAsync(string deviceId, string transferId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                var changed = await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE transfers SET state = 'complete', received = chunk_count, updated_at = $3 WHERE device_id = $1 AND transfer_id = $2 AND state = 'receiving'",
                    cancellationToken,
                    deviceId,
                    transferId,
                    ToUnix(at)).ConfigureAwait(false) == 1;
                if (changed)
                {
                    await ForgetChunksAsync(connection, transaction, deviceId, transferId, cancellationToken).ConfigureAwait(false);
                }

                return (changed, changed ? End.Commit : End.Rollback);
            },
            cancellationToken);

    public Task<StoredFileRecord?> CompleteFileTransferAsync(StoredFileRecord file, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync<StoredFileRecord?>(
            async (connection, transaction) =>
            {
                var transfer = await TransferInAsync(connection, transaction, file.DeviceId, file.TransferId, cancellationToken, forUpdate: true).ConfigureAwait(false);
                if (transfer is { State: TransferStates.Complete })
                {
                    // A completion retried: the file stored then (null if an operator deleted it since).
                    var stored = transfer.FileId is null ? null : await FileInAsync(connection, transaction, transfer.FileId, cancellationToken).ConfigureAwait(false);
                    return (stored, End.Rollback);
                }

                if (transfer is not { State: TransferStates.Receiving })
                {
                    return (null, End.Rollback);
                }

                await ExecuteAsync(
                    connection,
                    transaction,
                    $"INSERT INTO files ({FileColumns}) VALUES ($1, $2, $3, $4, $5::text, $6, $7, $8, $9::bigint, $10)",
                    cancellationToken,
                    file.FileId,
                    file.DeviceId,
                    file.TransferId,
                    file.Name,
                    file.ContentType,
                    file.Size,
                    file.Sha256,
                    file.BlobKey,
                    ToUnix(file.CreatedAt),
                    ToUnix(file.ReceivedAt)).ConfigureAwait(false);
                await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE transfers SET state = 'complete', received = chunk_count, updated_at = $3, file_id = $4 WHERE device_id = $1 AND transfer_id = $2",
                    cancellationToken,
                    file.DeviceId,
                    file.TransferId,
                    ToUnix(at),
                    file.FileId).ConfigureAwait(false);
                await ForgetChunksAsync(connection, transaction, file.DeviceId, file.TransferId, cancellationToken).ConfigureAwait(false);
                return (file, End.Commit);
            },
            cancellationToken);

    public Task<bool> RefuseTransferAsync(string deviceId, string transferId, string reason, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        TransactAsync(
            async (connection, transaction) =>
            {
                var changed = await ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE transfers SET state = 'refused', reason = $3, updated_at = $4 WHERE device_id = $1 AND transfer_id = $2 AND state = 'receiving'",
                    cancellationToken,
                    deviceId,
                    transferId,
                    reason,
                    ToUnix(at)).ConfigureAwait(false) == 1;
                if (changed)
                {
                    await ForgetChunksAsync(connection, transaction, deviceId, transferId, cancellationToken).ConfigureAwait(false);
                }

                return (changed, changed ? End.Commit : End.Rollback);
            },
            cancellationToken);

    public Task<IReadOnlyList<TransferRecord>> RemoveExpiredTransfersAsync(DateTimeOffset idleBefore, DateTimeOffset finishedBefore, int limit, CancellationToken cancellationToken = default) =>
        TransactAsync<IReadOnlyList<TransferRecord>>(
            async (connection, transaction) =>
            {
                // SKIP LOCKED: a transfer taking a chunk right now is not idle, and two instances sweeping at once share
                // the work instead of waiting on each other.
                var idle = await QueryAsync(
                    connection,
                    transaction,
                    $"SELECT {TransferColumns} FROM transfers WHERE state = 'receiving' AND updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                    ReadTransfer,
                    cancellationToken,
                    ToUnix(idleBefore),
                    limit).ConfigureAwait(false);
                foreach (var transfer in idle)
                {
                    await ForgetChunksAsync(connection, transaction, transfer.DeviceId, transfer.TransferId, cancellationToken).ConfigureAwait(false);
                    await ExecuteAsync(connection, transaction, "DELETE FROM transfers WHERE device_id = $1 AND transfer_id = $2", cancellationToken, transfer.DeviceId, transfer.TransferId).ConfigureAwait(false);
                }

                await ExecuteAsync(connection, transaction, "DELETE FROM transfers WHERE state <> 'receiving' AND updated_at < $1", cancellationToken, ToUnix(finishedBefore)).ConfigureAwait(false);
                return (idle, End.Commit);
            },
            cancellationToken);

    public async Task<IReadOnlyList<TransferRecord>> ListReceivingTransfersAsync(string? deviceId, int limit, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            $"SELECT {TransferColumns} FROM transfers WHERE state = 'receiving' AND ($1::text IS NULL OR device_id = $1::text) ORDER BY started_at, device_id, transfer_id LIMIT $2",
            ReadTransfer,
            cancellationToken,
            deviceId,
            limit).ConfigureAwait(false);

    public async Task<StoredFileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {FileColumns} FROM files WHERE file_id = $1", ReadFile, cancellationToken, fileId).ConfigureAwait(false)).FirstOrDefault();

    public async Task<IReadOnlyList<StoredFileRecord>> ListFilesAsync(string? deviceId, int limit, string? afterFileId = null, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            $"""
            SELECT {FileColumns} FROM files
            WHERE ($1::text IS NULL OR device_id = $1::text)
              AND ($2::text IS NULL OR seq > (SELECT seq FROM files WHERE file_id = $2::text))
            ORDER BY seq LIMIT $3
            """,
            ReadFile,
            cancellationToken,
            deviceId,
            afterFileId,
            limit).ConfigureAwait(false);

    public async Task<StoredFileRecord?> DeleteFileAsync(string fileId, CancellationToken cancellationToken = default)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await QueryOneAsync(connection, null, $"DELETE FROM files WHERE file_id = $1 RETURNING {FileColumns}", ReadFile, cancellationToken, fileId).ConfigureAwait(false);
    }

    public async Task<DeviceFileUsage> FileUsageAsync(string deviceId, CancellationToken cancellationToken = default)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await UsageInAsync(connection, null, deviceId, cancellationToken).ConfigureAwait(false);
    }

    private static Task<TransferRecord?> TransferInAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string deviceId, string transferId, CancellationToken cancellationToken, bool forUpdate = false) =>
        QueryOneAsync(
            connection,
            transaction,
            $"SELECT {TransferColumns} FROM transfers WHERE device_id = $1 AND transfer_id = $2" + (forUpdate ? " FOR UPDATE" : string.Empty),
            ReadTransfer,
            cancellationToken,
            deviceId,
            transferId);

    private static Task<StoredFileRecord?> FileInAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string fileId, CancellationToken cancellationToken) =>
        QueryOneAsync(connection, transaction, $"SELECT {FileColumns} FROM files WHERE file_id = $1", ReadFile, cancellationToken, fileId);

    private static async Task<DeviceFileUsage> UsageInAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string deviceId, CancellationToken cancellationToken) =>
        (await QueryAsync(
            connection,
            transaction,
            """
            SELECT (SELECT COALESCE(SUM(size), 0) FROM files WHERE device_id = $1)::bigint,
                   (SELECT COALESCE(SUM(size), 0) FROM transfers WHERE device_id = $1 AND kind = 'file' AND state = 'receiving')::bigint
            """,
            r => new DeviceFileUsage(r.GetInt64(0), r.GetInt64(1)),
            cancellationToken,
            deviceId).ConfigureAwait(false))[0];

    private static Task<int> ForgetChunksAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string deviceId, string transferId, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, transaction, "DELETE FROM transfer_chunks WHERE device_id = $1 AND transfer_id = $2", cancellationToken, deviceId, transferId);
}
