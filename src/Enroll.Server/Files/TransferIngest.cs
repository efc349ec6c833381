using System.Buffers;
using System.Collections;
using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Transfers;
using Enroll.Server.Diagnostics;
using Enroll.Server.Ingest;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Packets;

namespace Enroll.Server.Files;

/// <summary>
/// Takes the chunks of transfers (SPEC §2.7, docs/protocol.md §13) for both transports: a chunk is checked, its transfer
/// started (the device's quota reserved) at whichever chunk arrives first, its bytes staged durably in the
/// <see cref="IBlobStore"/> and then recorded in the <see cref="IFileStore"/>; the chunk that completes a transfer is
/// answered only after the whole was verified against its SHA-256 and stored — a message through
/// <see cref="MessageIngest"/> (one stored message, sinks see it once), a file moved into the blob store and recorded.
/// A resent chunk is acknowledged without being written again; any chunk of a refused transfer gets its refusal again.
/// Memory: one chunk per publish in flight; a message is held whole only while it is stored (at most
/// <see cref="EnrollServerOptions.MaxMessageBytes"/>), a file is hashed through a small buffer.
/// </summary>
internal sealed partial class TransferIngest
{
    /// <summary>A quota refusal's reason starts with this, so a resent chunk gets 0x97 again rather than 0x99.</summary>
    public const string QuotaReasonPrefix = "quota exceeded: ";

    private const int HashBufferBytes = 80 * 1024;
    private const int MaxTrackedTransfers = 10_000;

    private readonly IFileStore _files;
    private readonly IBlobStore _blobs;
    private readonly MessageIngest _messages;
    private readonly TimeOrderedId _ids;
    private readonly TimeProvider _timeProvider;
    private readonly ServerMetrics _metrics;
    private readonly ILogger<TransferIngest> _logger;
    private readonly EnrollServerOptions _options;

    // Which chunks of a transfer this instance recorded, so a resend is acknowledged without writing it again. Only
    // chunks known to be recorded are here (another instance's are not, and are at worst written again, harmlessly).
    private readonly ConcurrentDictionary<(string DeviceId, string TransferId), ReceivedChunks> _received = new();

    // One completion per transfer at a time: a resend of the last chunk waits for the completion under way.
    private readonly ConcurrentDictionary<(string DeviceId, string TransferId), Lazy<Task<ChunkRefusal?>>> _completing = new();

    public TransferIngest(IFileStore files, IBlobStore blobs, MessageIngest messages, TimeOrderedId ids, TimeProvider timeProvider, ServerMetrics metrics, IOptions<EnrollServerOptions> options, ILogger<TransferIngest> logger)
    {
        _files = files;
        _blobs = blobs;
        _messages = messages;
        _ids = ids;
        _timeProvider = timeProvider;
        _metrics = metrics;
        _logger = logger;
        _options = options.Value;
    }

    /// <summary>The staging key of a transfer, also the key of the file stored from it: unique per start, so a transfer ID reused after its record expired never meets the old bytes.</summary>
    public static string BlobKey(TransferRecord transfer)
    {
        ArgumentNullException.ThrowIfNull(transfer);
        return FolderBlobStore.KeyFor(transfer.DeviceId, string.Create(CultureInfo.InvariantCulture, $"{transfer.TransferId}-{transfer.StartedAt.ToUnixTimeMilliseconds()}"));
    }

    /// <summary>
    /// Reads a chunk published by <paramref name="deviceId"/> (on its messages topic of <paramref name="stream"/>, or on its
    /// files topic when that is null) and starts taking it, off the caller's thread (the broker goes on reading packets).
    /// The payload is copied before this returns.
    /// </summary>
    public Task<(IngestResult Result, string? Reason)> Start(string deviceId, string? stream, IReadOnlyList<MqttUserProperty>? userProperties, string? contentType, ReadOnlySequence<byte> payload)
    {
        // Whole milliseconds, as the registry keeps instants: the start time is part of the transfer's blob key.
        var now = DateTimeOffset.FromUnixTimeMilliseconds(_timeProvider.GetUtcNow().ToUnixTimeMilliseconds());
        var (chunk, refusal) = TransferChunk.Parse(deviceId, stream, userProperties, contentType, payload, now, _options.MaxMessageBytes, _options.MaxFileBytes);
        if (chunk is null)
        {
            var transferId = userProperties?.FirstOrDefault(p => p.Name == TransferProperties.TransferId)?.ReadValueAsString() ?? "(none)";
            return Task.FromResult(Refused(deviceId, transferId, -1, refusal!));
        }

        return Task.Run(() => IngestAsync(chunk, CancellationToken.None));
    }

    /// <summary>Takes one chunk: stored, a duplicate, or refused with a reason; passing failures (disk full, registry down) throw.</summary>
    public async Task<(IngestResult Result, string? Reason)> IngestAsync(TransferChunk chunk, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        var declared = chunk.Transfer;
        for (var attempt = 0; ; attempt++)
        {
            var transfer = await _files.GetTransferAsync(declared.DeviceId, declared.TransferId, cancellationToken).ConfigureAwait(false)
                ?? await BeginAsync(declared, cancellationToken).ConfigureAwait(false);
            if (chunk.MismatchWith(transfer) is { } mismatch)
            {
                return Refused(declared.DeviceId, declared.TransferId, chunk.Index, new ChunkRefusal(ChunkRefusal.Invalid, mismatch));
            }

            switch (transfer.State)
            {
                case TransferStates.Complete:
                    _metrics.ChunkTaken("duplicate");
                    return (IngestResult.Duplicate, null);
                case TransferStates.Refused:
                    return RefusedBefore(transfer, chunk.Index);
            }

            var key = (transfer.DeviceId, transfer.TransferId);
            var known = Track(transfer);
            var written = !known.Has(chunk.Index);
            if (written)
            {
                await _blobs.WriteChunkAsync(BlobKey(transfer), chunk.Offset, chunk.Payload, cancellationToken).ConfigureAwait(false);
            }

            var recorded = await _files.RecordChunkAsync(transfer.DeviceId, transfer.TransferId, chunk.Index, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
            if (recorded is null)
            {
                // Completed, refused or expired since it was read: answer by its state now (a second look settles it). The
                // write may have brought back the staged file its end removed; nothing reads it any more.
                _received.TryRemove(key, out _);
                if (written)
                {
                    await _blobs.DeleteStagedAsync(BlobKey(transfer), cancellationToken).ConfigureAwait(false);
                }

                if (attempt == 0)
                {
                    continue;
                }

                throw new InvalidOperationException($"transfer {transfer.TransferId} of device {transfer.DeviceId} changed state twice while chunk {chunk.Index} was taken");
            }

            known.Add(chunk.Index);
            if (recorded.Received >= recorded.ChunkCount)
            {
                if (await CompleteOnceAsync(transfer, cancellationToken).ConfigureAwait(false) is { } refusal)
                {
                    return Refused(transfer.DeviceId, transfer.TransferId, chunk.Index, refusal);
                }
            }

            _metrics.ChunkTaken(recorded.IsNew ? "stored" : "duplicate");
            return (recorded.IsNew ? IngestResult.Stored : IngestResult.Duplicate, null);
        }
    }

    /// <summary>Starts the transfer; over the quota, records it refused (so its other chunks and its status say so) and returns that.</summary>
    private async Task<TransferRecord> BeginAsync(TransferRecord declared, CancellationToken cancellationToken)
    {
        var begun = await _files.BeginTransferAsync(declared, _options.DeviceFileQuotaBytes, cancellationToken).ConfigureAwait(false);
        if (begun.Result == BeginTransferResult.Started)
        {
            LogStarted(_logger, declared.DeviceId, declared.TransferId, declared.Kind, declared.Name, declared.Size, declared.ChunkCount);
            return begun.Transfer!;
        }

        if (begun.Result == BeginTransferResult.Exists)
        {
            return begun.Transfer!;
        }

        var usage = begun.Usage!;
        var reason = string.Create(
            CultureInfo.InvariantCulture,
            $"{QuotaReasonPrefix}the device's files take {usage.StoredBytes:N0} bytes and its files under way {usage.ReceivingBytes:N0} bytes of its quota of {_options.DeviceFileQuotaBytes:N0} bytes; this file of {declared.Size:N0} bytes does not fit");

        // Recorded as refused (started past the quota, refused at once), so a resend or a status request learns the reason.
        var recorded = await _files.BeginTransferAsync(declared, long.MaxValue, cancellationToken).ConfigureAwait(false);
        if (recorded.Result == BeginTransferResult.Started)
        {
            await _files.RefuseTransferAsync(declared.DeviceId, declared.TransferId, reason, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
            LogRefused(_logger, declared.DeviceId, declared.TransferId, reason);
            _metrics.TransferFinished(declared.Kind, "refused");
        }

        return await _files.GetTransferAsync(declared.DeviceId, declared.TransferId, cancellationToken).ConfigureAwait(false)
            ?? recorded.Transfer! with { State = TransferStates.Refused, Reason = reason };
    }

    private async Task<ChunkRefusal?> CompleteOnceAsync(TransferRecord transfer, CancellationToken cancellationToken)
    {
        var key = (transfer.DeviceId, transfer.TransferId);
        var completion = _completing.GetOrAdd(key, _ => new Lazy<Task<ChunkRefusal?>>(() => CompleteAsync(transfer, cancellationToken)));
        try
        {
            return await completion.Value.ConfigureAwait(false);
        }
        finally
        {
            _completing.TryRemove(new KeyValuePair<(string, string), Lazy<Task<ChunkRefusal?>>>(key, completion));
        }
    }

    /// <summary>Verifies and stores the whole of a transfer whose chunks are all staged; the refusal, or null when it is stored.</summary>
    private async Task<ChunkRefusal?> CompleteAsync(TransferRecord transfer, CancellationToken cancellationToken)
    {
        var now = _timeProvider.GetUtcNow();
        var key = BlobKey(transfer);
        _received.TryRemove((transfer.DeviceId, transfer.TransferId), out _);

        // A completion that finished just before this one started (a resend of the last chunk) has settled it already.
        if (await SettledAsync(transfer, cancellationToken).ConfigureAwait(false) is { } settled)
        {
            return settled.Refusal;
        }
        if (transfer.Kind == TransferKinds.Message)
        {
            byte[]? whole;
            var staged = _blobs.OpenStaged(key);
            await using (staged)
            {
                whole = staged is null ? null : await ReadWholeAsync(staged, transfer, cancellationToken).ConfigureAwait(false);
            }

            if (whole is null)
            {
                return await RefuseAsync(transfer, ChunkRefusal.Gone, "the server no longer has the chunks of this transfer; send the message again under a new transfer ID", cancellationToken).ConfigureAwait(false);
            }

            if (HashMismatch(transfer, SHA256.HashData(whole)) is { } mismatch)
            {
                return await RefuseAsync(transfer, ChunkRefusal.Hash, mismatch, cancellationToken).ConfigureAwait(false);
            }

            var message = new IngestedMessage
            {
                DeviceId = transfer.DeviceId,
                MessageId = transfer.MessageId!,
                Stream = transfer.Name,
                CreatedAt = transfer.CreatedAt,
                ReceivedAt = now,
                ContentType = transfer.ContentType,
                Properties = transfer.PropertiesJson is { } json ? JsonSerializer.Deserialize(json, RegistryJsonContext.Default.DictionaryStringString)! : new Dictionary<string, string>(),
                Payload = whole,
            };
            var (result, reason) = await _messages.IngestAsync(message, transfer.ContentEncoding, cancellationToken, _options.MaxMessageBytes).ConfigureAwait(false);
            if (IngestAcks.IsRefusal(result))
            {
                return await RefuseAsync(transfer, ChunkRefusal.Content, reason!, cancellationToken).ConfigureAwait(false);
            }

            await _files.CompleteMessageTransferAsync(transfer.DeviceId, transfer.TransferId, now, cancellationToken).ConfigureAwait(false);
            await _blobs.DeleteStagedAsync(key, cancellationToken).ConfigureAwait(false);
            LogCompleted(_logger, transfer.DeviceId, transfer.TransferId, transfer.Kind, transfer.Name, transfer.Size, "message " + transfer.MessageId);
            _metrics.TransferFinished(transfer.Kind, "complete");
            return null;
        }

        var committed = _blobs.OpenRead(key);
        if (committed is not null)
        {
            // Moved into place (after its hash was verified) before a crash or by another instance: record it. A staged
            // file under the same key is a resend written after that move, of no use.
            await committed.DisposeAsync().ConfigureAwait(false);
            await _blobs.DeleteStagedAsync(key, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var stagedFile = _blobs.OpenStaged(key);
            if (stagedFile is null)
            {
                return await RefuseAsync(transfer, ChunkRefusal.Gone, "the server no longer has the chunks of this transfer; send the file again under a new transfer ID", cancellationToken).ConfigureAwait(false);
            }

            string? mismatch;
            await using (stagedFile)
            {
                mismatch = await VerifyAsync(stagedFile, transfer, cancellationToken).ConfigureAwait(false);
            }

            if (mismatch is not null)
            {
                return await RefuseAsync(transfer, ChunkRefusal.Hash, mismatch, cancellationToken).ConfigureAwait(false);
            }

            await _blobs.CommitAsync(key, key, cancellationToken).ConfigureAwait(false);
        }

        var stored = await _files.CompleteFileTransferAsync(
            new StoredFileRecord
            {
                FileId = "file_" + _ids.Next(),
                DeviceId = transfer.DeviceId,
                TransferId = transfer.TransferId,
                Name = transfer.Name,
                ContentType = transfer.ContentType,
                Size = transfer.Size,
                Sha256 = transfer.Sha256,
                BlobKey = key,
                CreatedAt = transfer.CreatedAt,
                ReceivedAt = now,
            },
            now,
            cancellationToken).ConfigureAwait(false);
        if (stored is null)
        {
            // Refused or expired meanwhile: the blob belongs to no file.
            await _blobs.DeleteAsync(key, cancellationToken).ConfigureAwait(false);
            var now2 = await _files.GetTransferAsync(transfer.DeviceId, transfer.TransferId, cancellationToken).ConfigureAwait(false);
            return now2 is { State: TransferStates.Refused, Reason: { } refusedFor }
                ? new ChunkRefusal(ChunkRefusal.RefusedBefore, refusedFor)
                : new ChunkRefusal(ChunkRefusal.Gone, "the transfer expired before it completed; send the file again under a new transfer ID");
        }

        LogCompleted(_logger, transfer.DeviceId, transfer.TransferId, transfer.Kind, transfer.Name, transfer.Size, "file " + stored.FileId);
        _metrics.TransferFinished(transfer.Kind, "complete");
        return null;
    }

    private static async Task<byte[]?> ReadWholeAsync(Stream staged, TransferRecord transfer, CancellationToken cancellationToken)
    {
        var whole = new byte[transfer.Size];
        var read = await staged.ReadAtLeastAsync(whole, whole.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        return read == whole.Length && staged.ReadByte() < 0 ? whole : null;
    }

    /// <summary>Hashes the staged file through a small buffer; the mismatch, or null.</summary>
    private static async Task<string?> VerifyAsync(Stream staged, TransferRecord transfer, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = ArrayPool<byte>.Shared.Rent(HashBufferBytes);
        long length = 0;
        try
        {
            int read;
            while ((read = await staged.ReadAsync(buffer.AsMemory(0, HashBufferBytes), cancellationToken).ConfigureAwait(false)) > 0)
            {
                hash.AppendData(buffer, 0, read);
                length += read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return length != transfer.Size
            ? string.Create(CultureInfo.InvariantCulture, $"the staged chunks hold {length:N0} bytes, not the declared {transfer.Size:N0}")
            : HashMismatch(transfer, hash.GetHashAndReset());
    }

    private static string? HashMismatch(TransferRecord transfer, byte[] actual)
    {
        var hex = Convert.ToHexStringLower(actual);
        return hex == transfer.Sha256
            ? null
            : $"sha256 mismatch: the chunks hash to {hex}, the transfer declared {transfer.Sha256}; the transfer is refused, send it again under a new transfer ID";
    }

    /// <summary>How the transfer ended when it is no longer receiving (null refusal: complete); null while it is receiving.</summary>
    private async Task<(ChunkRefusal? Refusal, bool Done)?> SettledAsync(TransferRecord transfer, CancellationToken cancellationToken)
    {
        var current = await _files.GetTransferAsync(transfer.DeviceId, transfer.TransferId, cancellationToken).ConfigureAwait(false);
        return current?.State switch
        {
            TransferStates.Receiving when current.StartedAt.ToUnixTimeMilliseconds() == transfer.StartedAt.ToUnixTimeMilliseconds() => null,
            TransferStates.Complete => (null, true),
            TransferStates.Refused => (new ChunkRefusal(ChunkRefusal.RefusedBefore, current.Reason ?? "the transfer was refused"), true),
            _ => (new ChunkRefusal(ChunkRefusal.Gone, "the transfer expired before it completed; send it again under a new transfer ID"), true),
        };
    }

    private async Task<ChunkRefusal?> RefuseAsync(TransferRecord transfer, string kind, string reason, CancellationToken cancellationToken)
    {
        if (!await _files.RefuseTransferAsync(transfer.DeviceId, transfer.TransferId, reason, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false)
            && await SettledAsync(transfer, cancellationToken).ConfigureAwait(false) is { } settled)
        {
            return settled.Refusal;
        }

        await _blobs.DeleteStagedAsync(BlobKey(transfer), cancellationToken).ConfigureAwait(false);
        LogRefused(_logger, transfer.DeviceId, transfer.TransferId, reason);
        _metrics.TransferFinished(transfer.Kind, "refused");
        return new ChunkRefusal(kind, reason);
    }

    private (IngestResult, string?) RefusedBefore(TransferRecord transfer, int index)
    {
        var reason = transfer.Reason ?? "the transfer was refused";
        _metrics.ChunkTaken("refused", ChunkRefusal.RefusedBefore);
        LogChunkRefused(_logger, transfer.DeviceId, transfer.TransferId, index, reason);
        return (ResultOf(reason), reason);
    }

    private (IngestResult, string?) Refused(string deviceId, string transferId, int index, ChunkRefusal refusal)
    {
        _metrics.ChunkTaken("refused", refusal.Kind);
        LogChunkRefused(_logger, deviceId, transferId, index, refusal.Reason);
        return (refusal.Kind == ChunkRefusal.Quota || refusal.Reason.StartsWith(QuotaReasonPrefix, StringComparison.Ordinal) ? IngestResult.QuotaExceeded : IngestResult.Invalid, refusal.Reason);
    }

    private static IngestResult ResultOf(string reason) =>
        reason.StartsWith(QuotaReasonPrefix, StringComparison.Ordinal) ? IngestResult.QuotaExceeded : IngestResult.Invalid;

    private ReceivedChunks Track(TransferRecord transfer)
    {
        if (_received.Count >= MaxTrackedTransfers)
        {
            // Only an optimisation: forgetting costs a rewrite of a resent chunk, never a wrong answer.
            _received.Clear();
        }

        var started = transfer.StartedAt.ToUnixTimeMilliseconds();
        return _received.AddOrUpdate(
            (transfer.DeviceId, transfer.TransferId),
            _ => new ReceivedChunks(started, transfer.ChunkCount),
            (_, known) => known.StartedAt == started ? known : new ReceivedChunks(started, transfer.ChunkCount));
    }

    /// <summary>The chunks of one start of a transfer this instance recorded.</summary>
    private sealed class ReceivedChunks(long startedAt, int count)
    {
        private readonly BitArray _bits = new(count);

        public long StartedAt { get; } = startedAt;

        public bool Has(int index)
        {
            lock (_bits)
            {
                return _bits[index];
            }
        }

        public void Add(int index)
        {
            lock (_bits)
            {
                _bits[index] = true;
            }
        }
    }

    [LoggerMessage(EventId = 1900, Level = LogLevel.Information, Message = "Transfer {TransferId} of device {DeviceId} started: {Kind} '{Name}', {Size} bytes in {ChunkCount} chunks")]
    private static partial void LogStarted(ILogger logger, string deviceId, string transferId, string kind, string name, long size, int chunkCount);

    [LoggerMessage(EventId = 1901, Level = LogLevel.Information, Message = "Transfer {TransferId} of device {DeviceId} complete: {Kind} '{Name}', {Size} bytes, stored as {Stored}")]
    private static partial void LogCompleted(ILogger logger, string deviceId, string transferId, string kind, string name, long size, string stored);

    [LoggerMessage(EventId = 1902, Level = LogLevel.Warning, Message = "Refused transfer {TransferId} of device {DeviceId}: {Reason}")]
    private static partial void LogRefused(ILogger logger, string deviceId, string transferId, string reason);

    [LoggerMessage(EventId = 1903, Level = LogLevel.Debug, Message = "Refused chunk {Index} of transfer {TransferId} of device {DeviceId}: {Reason}")]
    private static partial void LogChunkRefused(ILogger logger, string deviceId, string transferId, int index, string reason);
}
