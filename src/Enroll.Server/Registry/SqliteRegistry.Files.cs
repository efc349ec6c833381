using Enroll.Protocol.Transfers;
using Enroll.Shared.Storage;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string TransferSelect = "SELECT " + TransferColumns + " FROM transfers";

    private const string FileSelect = "SELECT " + FileColumns + " FROM files";

    public Task<BeginTransferOutcome> BeginTransferAsync(TransferRecord transfer, long quotaBytes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transfer);

        // The one writer serialises starts: the usage counted and the insert see no other write in between, so two
        // transfers started at once cannot both fit into the room for one.
        return _database.WriteAsync(
            context =>
            {
                if (FindTransfer(context, transfer.DeviceId, transfer.TransferId) is { } existing)
                {
                    return new BeginTransferOutcome(BeginTransferResult.Exists, existing);
                }

                if (transfer.Kind == TransferKinds.File)
                {
                    var usage = UsageIn(context, transfer.DeviceId);
                    if (usage.Total + transfer.Size > quotaBytes)
                    {
                        return new BeginTransferOutcome(BeginTransferResult.QuotaExceeded, null, usage);
                    }
                }

                var started = transfer with { State = TransferStates.Receiving, Reason = null, Received = 0, FileId = null };
                context.Execute(
                    "INSERT INTO transfers (" + TransferColumns + ") VALUES ($device, $transfer, $kind, $name, $type, $encoding, $message, $created, $properties, $size, $chunkSize, $chunkCount, $sha, $state, NULL, 0, $started, $updated, NULL)",
                    ("$device", started.DeviceId),
                    ("$transfer", started.TransferId),
                    ("$kind", started.Kind),
                    ("$name", started.Name),
                    ("$type", started.ContentType),
                    ("$encoding", started.ContentEncoding),
                    ("$message", started.MessageId),
                    ("$created", ToUnix(started.CreatedAt)),
                    ("$properties", started.PropertiesJson),
                    ("$size", started.Size),
                    ("$chunkSize", started.ChunkSize),
                    ("$chunkCount", started.ChunkCount),
                    ("$sha", started.Sha256),
                    ("$state", started.State),
                    ("$started", ToUnix(started.StartedAt)),
                    ("$updated", ToUnix(started.UpdatedAt)));
                return new BeginTransferOutcome(BeginTransferResult.Started, started);
            },
            cancellationToken);
    }

    public Task<TransferRecord?> GetTransferAsync(string deviceId, string transferId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(TransferSelect + " WHERE device_id = $device AND transfer_id = $transfer", ReadTransfer, ("$device", deviceId), ("$transfer", transferId)).FirstOrDefault());

    public Task<RecordChunkOutcome?> RecordChunkAsync(string deviceId, string transferId, int index, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                using var reader = context.Command(
                    "SELECT received, chunk_count FROM transfers WHERE device_id = $device AND transfer_id = $transfer AND state = 'receiving'",
                    ("$device", deviceId),
                    ("$transfer", transferId)).ExecuteReader();
                if (!reader.Read())
                {
                    return null;
                }

                var received = reader.GetInt32(0);
                var count = reader.GetInt32(1);
                reader.Close();

                // A resend finds its row: acknowledged again, counted once.
                var isNew = context.Execute(
                    "INSERT OR IGNORE INTO transfer_chunks (device_id, transfer_id, chunk_index) VALUES ($device, $transfer, $index)",
                    ("$device", deviceId),
                    ("$transfer", transferId),
                    ("$index", index)) == 1;
                if (isNew)
                {
                    received++;
                }

                context.Execute(
                    "UPDATE transfers SET received = $received, updated_at = $at WHERE device_id = $device AND transfer_id = $transfer",
                    ("$device", deviceId),
                    ("$transfer", transferId),
                    ("$received", received),
                    ("$at", ToUnix(at)));
                return new RecordChunkOutcome(isNew, received, count);
            },
            cancellationToken);

    public Task<IReadOnlyList<int>> ReceivedChunksAsync(string deviceId, string transferId, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<int>>(Query(
            "SELECT chunk_index FROM transfer_chunks WHERE device_id = $device AND transfer_id = $transfer ORDER BY chunk_index",
            r => r.GetInt32(0),
            ("$device", deviceId),
            ("$transfer", transferId)));

    public Task<bool> CompleteMessageTransferAsync(string deviceId, string transferId, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => Finish(context, deviceId, transferId, TransferStates.Complete, reason: null, fileId: null, at),
            cancellationToken);

    public Task<StoredFileRecord?> CompleteFileTransferAsync(StoredFileRecord file, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(file);
        return _database.WriteAsync(
            context =>
            {
                var transfer = FindTransfer(context, file.DeviceId, file.TransferId);
                switch (transfer?.State)
                {
                    case TransferStates.Complete:
                        return transfer.FileId is null ? null : QueryOne(context, FileSelect + " WHERE file_id = $id", ReadFile, ("$id", transfer.FileId));
                    case TransferStates.Receiving:
                        break;
                    default:
                        return null;
                }

                context.Execute(
                    "INSERT INTO files (" + FileColumns + ") VALUES ($id, $device, $transfer, $name, $type, $size, $sha, $blob, $created, $received)",
                    ("$id", file.FileId),
                    ("$device", file.DeviceId),
                    ("$transfer", file.TransferId),
                    ("$name", file.Name),
                    ("$type", file.ContentType),
                    ("$size", file.Size),
                    ("$sha", file.Sha256),
                    ("$blob", file.BlobKey),
                    ("$created", ToUnix(file.CreatedAt)),
                    ("$received", ToUnix(file.ReceivedAt)));
                Finish(context, file.DeviceId, file.TransferId, TransferStates.Complete, reason: null, file.FileId, at);
                return file;
            },
            cancellationToken);
    }

    public Task<bool> RefuseTransferAsync(string deviceId, string transferId, string reason, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => Finish(context, deviceId, transferId, TransferStates.Refused, reason, fileId: null, at),
            cancellationToken);

    public Task<IReadOnlyList<TransferRecord>> RemoveExpiredTransfersAsync(DateTimeOffset idleBefore, DateTimeOffset finishedBefore, int limit, CancellationToken cancellationToken = default) =>
        _database.WriteAsync<IReadOnlyList<TransferRecord>>(
            context =>
            {
                var idle = new List<TransferRecord>();
                using (var reader = context.Command(
                    TransferSelect + " WHERE state = 'receiving' AND updated_at < $before ORDER BY updated_at LIMIT $limit",
                    ("$before", ToUnix(idleBefore)),
                    ("$limit", limit)).ExecuteReader())
                {
                    while (reader.Read())
                    {
                        idle.Add(ReadTransfer(reader));
                    }
                }

                foreach (var transfer in idle)
                {
                    ForgetChunks(context, transfer.DeviceId, transfer.TransferId);
                    context.Execute(
                        "DELETE FROM transfers WHERE device_id = $device AND transfer_id = $transfer",
                        ("$device", transfer.DeviceId),
                        ("$transfer", transfer.TransferId));
                }

                // Finished transfers have no chunk records left (finishing forgets them): one statement removes them.
                context.Execute(
                    "DELETE FROM transfers WHERE state IN ('complete', 'refused') AND updated_at < $before",
                    ("$before", ToUnix(finishedBefore)));
                return idle;
            },
            cancellationToken);

    public Task<IReadOnlyList<TransferRecord>> ListReceivingTransfersAsync(string? deviceId, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<TransferRecord>>(Query(
            TransferSelect + " WHERE state = 'receiving' AND ($device IS NULL OR device_id = $device) ORDER BY started_at, device_id, transfer_id LIMIT $limit",
            ReadTransfer,
            ("$device", deviceId),
            ("$limit", limit)));

    public Task<StoredFileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(FileSelect + " WHERE file_id = $id", ReadFile, ("$id", fileId)).FirstOrDefault());

    public Task<IReadOnlyList<StoredFileRecord>> ListFilesAsync(string? deviceId, int limit, string? afterFileId = null, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<StoredFileRecord>>(Query(
            FileSelect
            + " WHERE ($device IS NULL OR device_id = $device)"
            + " AND seq > COALESCE((SELECT seq FROM files WHERE file_id = $after), 0) ORDER BY seq LIMIT $limit",
            ReadFile,
            ("$device", deviceId),
            ("$after", afterFileId),
            ("$limit", limit)));

    public Task<StoredFileRecord?> DeleteFileAsync(string fileId, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context =>
            {
                var file = QueryOne(context, FileSelect + " WHERE file_id = $id", ReadFile, ("$id", fileId));
                if (file is not null)
                {
                    context.Execute("DELETE FROM files WHERE file_id = $id", ("$id", fileId));
                }

                return file;
            },
            cancellationToken);

    public Task<DeviceFileUsage> FileUsageAsync(string deviceId, CancellationToken cancellationToken = default) =>
        Task.FromResult(_database.Read(context =>
        {
            using var reader = context.Command(UsageSql, ("$device", deviceId)).ExecuteReader();
            reader.Read();
            return new DeviceFileUsage(reader.GetInt64(0), reader.GetInt64(1));
        }));

    private const string UsageSql =
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM files WHERE device_id = $device),"
        + " (SELECT COALESCE(SUM(size), 0) FROM transfers WHERE device_id = $device AND kind = 'file' AND state = 'receiving')";

    private static DeviceFileUsage UsageIn(SqliteWriteContext context, string deviceId)
    {
        using var reader = context.Command(UsageSql, ("$device", deviceId)).ExecuteReader();
        reader.Read();
        return new DeviceFileUsage(reader.GetInt64(0), reader.GetInt64(1));
    }

    private static TransferRecord? FindTransfer(SqliteWriteContext context, string deviceId, string transferId) =>
        QueryOne(context, TransferSelect + " WHERE device_id = $device AND transfer_id = $transfer", ReadTransfer, ("$device", deviceId), ("$transfer", transferId));

    /// <summary>Moves a receiving transfer to <paramref name="state"/> and forgets its chunk records; false when it was not receiving.</summary>
    private static bool Finish(SqliteWriteContext context, string deviceId, string transferId, string state, string? reason, string? fileId, DateTimeOffset at)
    {
        var changed = context.Execute(
            "UPDATE transfers SET state = $state, reason = $reason, file_id = $file, updated_at = $at,"
            + " received = CASE WHEN $state = 'complete' THEN chunk_count ELSE received END"
            + " WHERE device_id = $device AND transfer_id = $transfer AND state = 'receiving'",
            ("$device", deviceId),
            ("$transfer", transferId),
            ("$state", state),
            ("$reason", reason),
            ("$file", fileId),
            ("$at", ToUnix(at))) == 1;
        if (changed)
        {
            ForgetChunks(context, deviceId, transferId);
        }

        return changed;
    }

    private static void ForgetChunks(SqliteWriteContext context, string deviceId, string transferId) =>
        context.Execute(
            "DELETE FROM transfer_chunks WHERE device_id = $device AND transfer_id = $transfer",
            ("$device", deviceId),
            ("$transfer", transferId));
}
