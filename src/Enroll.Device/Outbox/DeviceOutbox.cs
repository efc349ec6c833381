using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using System.Security.Cryptography;
using Enroll.Protocol;
using Enroll.Protocol.Transfers;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// The device's durable outbox (SPEC §2.4): <see cref="SendAsync"/> returns only once the message is committed to
/// SQLite, and the <see cref="OutboxPublisher"/> delivers it at least once to
/// <c>enroll/v1/devices/{device_id}/messages/{stream}</c>. Concurrent senders share commits (group commit); a lone sender
/// never waits for others.
/// </summary>
public sealed class DeviceOutbox : IAsyncDisposable
{
    private readonly OutboxStore _store;
    private readonly EnrollDeviceOptions _options;
    private readonly OutboxLimits _limits;
    private readonly TimeOrderedId _ids;
    private readonly TimeProvider _timeProvider;
    private readonly Func<string?> _deviceId;
    private readonly OutboxMetrics? _metrics;
    private readonly ILogger _logger;

    internal DeviceOutbox(IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<DeviceOutbox> logger, Func<string?> deviceId, OutboxMetrics? metrics = null)
    {
        _options = options.Value;
        _timeProvider = timeProvider;
        _deviceId = deviceId;
        _metrics = metrics;
        _logger = logger;
        _ids = new TimeOrderedId(timeProvider);
        _limits = new OutboxLimits(_options.OutboxMaxMessages, _options.OutboxMaxBytes, _options.OutboxOverflow);
        _store = new OutboxStore(_options.StatePath, _options.OutboxDurability, timeProvider, logger);
        _metrics?.Observe(this);
    }

    /// <summary>Raised (in this process) after each committed send, so the publisher does not wait for its next look.</summary>
    internal event Action? MessageStored;

    /// <summary>Raised (in this process) when a transfer became ready to send, so the publisher looks again from the start.</summary>
    internal event Action? TransferReadied;

    /// <summary>How many bytes of a file one copy transaction commits.</summary>
    internal const int CopyBatchBytes = 4 * 1024 * 1024;

    internal OutboxStore Store => _store;

    /// <summary>
    /// The Maximum Packet Size the broker announced on the publisher's current connection (in this process), or null
    /// when unknown; <see cref="SendAsync"/> sends a message that would not fit it in chunks that do.
    /// </summary>
    internal long? BrokerMaximumPacketSize { get; set; }

    /// <summary>
    /// Stores a message durably and returns its ID once committed. A message whose payload (after compression) does not
    /// fit one packet — larger than <see cref="EnrollDeviceOptions.ChunkBytes"/>, or than the broker's Maximum Packet Size
    /// allows — is stored as the chunks of one transfer in one transaction, sent as chunks and stored by the server as
    /// one message, identical to what was sent. The message keeps the Device ID the device has now
    /// (null before its first registration; it is then published under the Device ID it gets). A send that finds no
    /// other send under way commits on the calling thread (the task is complete when it returns); concurrent sends are
    /// queued and share the next commit.
    /// </summary>
    /// <exception cref="ArgumentException">The stream name is not valid.</exception>
    /// <exception cref="OutboxFullException">The outbox is full and its policy is <see cref="OutboxOverflowPolicy.Reject"/>.</exception>
    /// <exception cref="MessageTooLargeException">
    /// The message, after compression, is larger than <see cref="EnrollDeviceOptions.MaxMessageBytes"/> (or the broker's
    /// announced Maximum Packet Size is too small for even a chunk): it could never be delivered, so it is not stored.
    /// </exception>
    /// <exception cref="OutboxStorageException">
    /// The outbox file cannot be written (the disk holding the state folder is full, or another process holds its lock);
    /// messages stored before are intact.
    /// </exception>
    public async Task<string> SendAsync(string stream, ReadOnlyMemory<byte> payload, MessageProperties? properties = null, CancellationToken cancellationToken = default)
    {
        if (!EnrollIdentifiers.IsValidStream(stream))
        {
            throw new ArgumentException($"stream must be one or more '/'-separated segments of {EnrollIdentifiers.Rule}", nameof(stream));
        }

        var (stored, encoding) = OutboxCodec.Encode(payload, _options.CompressAbove);
        if (stored.Length > _options.MaxMessageBytes)
        {
            throw new MessageTooLargeException(stored.Length, _options.MaxMessageBytes, "the maximum message size (MaxMessageBytes)");
        }

        var deviceId = _deviceId();
        var message = new OutboxInsert(
            _ids.Next(),
            deviceId,
            stream,
            _timeProvider.GetUtcNow(),
            properties?.ContentType,
            encoding,
            OutboxCodec.EncodeProperties(properties?.Custom),
            stored);

        // The packet as the publisher will build it (a Device ID not known yet counted at its longest).
        var topic = Protocol.Topics.EnrollTopics.DeviceMessages(deviceId ?? new string('x', 64), stream);
        var max = BrokerMaximumPacketSize;
        var fits = stored.Length <= _options.ChunkBytes
            && (max is not { } limit || OutboxCodec.PublishPacketSize(topic, properties?.ContentType, PublishProperties(message.MessageId, encoding, properties), stored.Length) <= limit);
        int dropped;
        if (fits)
        {
            dropped = await StoreAsync("message", () => _store.InsertAsync(message, _limits, cancellationToken)).ConfigureAwait(false);
        }
        else if (_options.ProtocolVersion == MqttProtocol.V311)
        {
            // Chunks carry their transfer in MQTT 5 user properties, which MQTT 3.1.1 drops: the server would store each as a message.
            throw new MessageTooLargeException(stored.Length, _options.ChunkBytes, "what one packet carries under MQTT 3.1.1 (chunked messages need MQTT 5 user properties: ProtocolVersion V500), ChunkBytes");
        }
        else
        {
            // Too large for one packet: chunks of one transfer, stored in one transaction (all or nothing).
            var chunkSize = ChunkSize(topic, properties?.ContentType, PublishProperties(message.MessageId, encoding, properties), null, stored.Length);
            var count = (int)Math.Max(1, (stored.Length + chunkSize - 1) / chunkSize);
            var transfer = new TransferInsert(
                message.MessageId,
                TransferKinds.Message,
                deviceId,
                stream,
                null,
                properties?.ContentType,
                message.MessageId,
                message.CreatedAt,
                stored.Length,
                chunkSize,
                count,
                Convert.ToHexStringLower(SHA256.HashData(stored)));
            dropped = await StoreAsync("message", () => _store.InsertMessageTransferAsync(transfer, message, _limits, cancellationToken)).ConfigureAwait(false);
            Log.TransferStored(_logger, TransferKinds.Message, transfer.TransferId, transfer.Size, count, chunkSize);
            TransferReadied?.Invoke();
        }

        if (dropped > 0)
        {
            _metrics?.Dropped(dropped);
        }

        MessageStored?.Invoke();
        return message.MessageId;
    }

    /// <summary>
    /// Copies a file into the outbox and returns its transfer ID once the whole file is committed; the
    /// <see cref="OutboxPublisher"/> then sends it in chunks (<see cref="EnrollDeviceOptions.ChunkBytes"/>) to
    /// <c>enroll/v1/devices/{device_id}/files</c>, resuming after reconnects and restarts, and the server stores it with
    /// its name, content type and SHA-256. The file is read once, chunk by chunk, in transactions of a few MiB: memory
    /// stays bounded whatever its size. Until the copy completes nothing of it is sent; a copy that fails or is cancelled
    /// leaves nothing behind, and one cut short by a crash is removed when the outbox next opens.
    /// </summary>
    /// <param name="name">The file's name as the server stores it (1-255 characters, no path separators or control characters).</param>
    /// <param name="content">The file's content, read from its current position to its end; not disposed.</param>
    /// <param name="contentType">The file's MIME type, for example <c>image/jpeg</c>.</param>
    /// <param name="cancellationToken">Cancels the copy (nothing of the file stays stored).</param>
    /// <exception cref="ArgumentException">The name is not valid.</exception>
    /// <exception cref="NotSupportedException">The device speaks MQTT 3.1.1 (<see cref="EnrollDeviceOptions.ProtocolVersion"/>), which cannot carry chunks.</exception>
    /// <exception cref="FileTooLargeException">The file is larger than <see cref="EnrollDeviceOptions.MaxFileBytes"/>.</exception>
    /// <exception cref="OutboxFullException">
    /// The file is larger than <see cref="EnrollDeviceOptions.OutboxMaxBytes"/>, or the outbox is full and its policy is
    /// <see cref="OutboxOverflowPolicy.Reject"/>.
    /// </exception>
    /// <exception cref="OutboxStorageException">The outbox file cannot be written (full disk, locked).</exception>
#pragma warning disable RS0026 // the two overloads (content or path) are the API the design fixes; a stream and a path never mix up
    public async Task<string> SendFileAsync(string name, Stream content, string? contentType = null, CancellationToken cancellationToken = default)
#pragma warning restore RS0026
    {
        if (TransferLimits.CheckName(name) is { } invalid)
        {
            throw new ArgumentException(invalid, nameof(name));
        }

        ArgumentNullException.ThrowIfNull(content);
        if (_options.ProtocolVersion == MqttProtocol.V311)
        {
            throw new NotSupportedException("files are sent in chunks whose transfer travels in MQTT 5 user properties, which MQTT 3.1.1 does not have: set ProtocolVersion to V500 to send files");
        }

        long? length = content.CanSeek ? Math.Max(0, content.Length - content.Position) : null;
        if (length > _options.MaxFileBytes)
        {
            throw new FileTooLargeException(length.Value, _options.MaxFileBytes);
        }

        if (length > _options.OutboxMaxBytes)
        {
            throw new OutboxFullException($"the file ({length:N0} bytes) is larger than the whole outbox ({_options.OutboxMaxBytes:N0} bytes, OutboxMaxBytes); raise OutboxMaxBytes to send it");
        }

        if (length is { } known && _options.OutboxOverflow == OutboxOverflowPolicy.Reject && GetStatistics() is var current && current.Bytes + known > _options.OutboxMaxBytes)
        {
            throw new OutboxFullException($"the outbox is full for this file ({current.Bytes:N0} of {_options.OutboxMaxBytes:N0} bytes used, OutboxMaxBytes; the file has {known:N0}); try again once the outbox has been delivered");
        }

        var deviceId = _deviceId();
        var transferId = _ids.Next();
        var createdAt = _timeProvider.GetUtcNow();
        var topic = Protocol.Topics.EnrollTopics.DeviceFiles(deviceId ?? new string('x', 64));
        var chunkSize = ChunkSize(topic, contentType, [new("created_at", "0000-00-00T00:00:00.000Z")], name, length ?? _options.MaxFileBytes);
        var template = new OutboxInsert(transferId, deviceId, string.Empty, createdAt, contentType, null, null, []);
        var limits = _limits;
        await StoreAsync("file", async () =>
        {
            await _store.BeginCopyAsync(new TransferInsert(transferId, TransferKinds.File, deviceId, null, name, contentType, null, createdAt, length ?? 0, chunkSize, 0, null), cancellationToken).ConfigureAwait(false);
            return 0;
        }).ConfigureAwait(false);

        try
        {
            var (size, count, sha256) = await CopyAsync(transferId, template, content, chunkSize, limits, cancellationToken).ConfigureAwait(false);
            await StoreAsync("file", async () =>
            {
                await _store.FinishCopyAsync(transferId, size, count, sha256, cancellationToken).ConfigureAwait(false);
                return 0;
            }).ConfigureAwait(false);
            Log.TransferStored(_logger, TransferKinds.File, transferId, size, count, chunkSize);
        }
        catch
        {
            try
            {
                await _store.AbandonCopyAsync(transferId).ConfigureAwait(false);
            }
            catch (SqliteException)
            {
                // Left copying: removed when the outbox next opens.
            }

            throw;
        }

        TransferReadied?.Invoke();
        MessageStored?.Invoke();
        return transferId;
    }

    /// <summary>
    /// Copies the file at <paramref name="path"/> into the outbox; see
    /// <see cref="SendFileAsync(string, Stream, string?, CancellationToken)"/>.
    /// </summary>
    /// <param name="path">The file to send.</param>
    /// <param name="name">The name the server stores it under. The default value is the file's own name.</param>
    /// <param name="contentType">The file's MIME type.</param>
    /// <param name="cancellationToken">Cancels the copy (nothing of the file stays stored).</param>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
#pragma warning disable RS0026 // the two overloads (content or path) are the API the design fixes; a stream and a path never mix up
    public async Task<string> SendFileAsync(string path, string? name = null, string? contentType = null, CancellationToken cancellationToken = default)
#pragma warning restore RS0026
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
        await using (file.ConfigureAwait(false))
        {
            return await SendFileAsync(name ?? Path.GetFileName(path), file, contentType, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The state of one transfer (a file, or a message sent in chunks), or null when the outbox holds nothing of it.</summary>
    public OutboxTransfer? GetTransfer(string transferId)
    {
        ArgumentNullException.ThrowIfNull(transferId);
        return _store.GetTransfer(transferId) is { } row
            ? new OutboxTransfer
            {
                TransferId = row.TransferId,
                Kind = row.Kind,
                Name = row.Name,
                Size = row.Size,
                ChunkCount = row.ChunkCount,
                AcknowledgedChunks = row.Acknowledged,
                ChunksLeft = row.RowsLeft,
                State = row.State switch
                {
                    OutboxStore.TransferCopying => OutboxTransferState.Copying,
                    OutboxStore.TransferReady => OutboxTransferState.Sending,
                    OutboxStore.TransferFailed => OutboxTransferState.Failed,
                    _ => OutboxTransferState.Delivered,
                },
                Reason = row.Reason,
            }
            : null;
    }

    /// <summary>Reads the file in chunks, hashing as it goes, and commits the chunks a few MiB at a time.</summary>
    private async Task<(long Size, int Count, string Sha256)> CopyAsync(string transferId, OutboxInsert template, Stream content, int chunkSize, OutboxLimits limits, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var perBatch = Math.Max(1, CopyBatchBytes / chunkSize);
        var buffers = new byte[perBatch][];
        var batch = new List<(int Index, byte[] Data, int Length)>(perBatch);
        long total = 0;
        var index = 0;
        while (true)
        {
            var buffer = buffers[batch.Count] ??= new byte[chunkSize];
            var read = await content.ReadAtLeastAsync(buffer, chunkSize, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            total += read;
            if (total > _options.MaxFileBytes)
            {
                throw new FileTooLargeException(total, _options.MaxFileBytes);
            }

            if (read > 0 || index == 0)
            {
                if (index >= TransferLimits.MaxChunkCount)
                {
                    throw new FileTooLargeException(total, (long)TransferLimits.MaxChunkCount * chunkSize);
                }

                hash.AppendData(buffer, 0, read);
                batch.Add((index++, buffer, read));
            }

            var end = read < chunkSize;
            if (batch.Count == perBatch || (end && batch.Count > 0))
            {
                var dropped = await StoreAsync("file", () => _store.InsertChunksAsync(transferId, template, batch, limits, cancellationToken)).ConfigureAwait(false);
                if (dropped > 0)
                {
                    _metrics?.Dropped(dropped);
                }

                batch.Clear();
            }

            if (end)
            {
                return (total, index, Convert.ToHexStringLower(hash.GetHashAndReset()));
            }
        }
    }

    /// <summary>The user properties the publisher sends with a message (its creation time at its longest).</summary>
    private static List<KeyValuePair<string, string>> PublishProperties(string messageId, string? encoding, MessageProperties? properties)
    {
        var userProperties = new List<KeyValuePair<string, string>> { new("message_id", messageId), new("created_at", "0000-00-00T00:00:00.000Z") };
        if (encoding is not null)
        {
            userProperties.Add(new("content_encoding", encoding));
        }

        userProperties.AddRange(properties?.Custom ?? new Dictionary<string, string>());
        return userProperties;
    }

    /// <summary>
    /// The chunk size for a transfer to <paramref name="topic"/>: <see cref="EnrollDeviceOptions.ChunkBytes"/>, less when
    /// the broker's Maximum Packet Size needs it; refuses when that leaves less than the protocol's minimum chunk.
    /// </summary>
    private int ChunkSize(string topic, string? contentType, IEnumerable<KeyValuePair<string, string>> properties, string? name, long size)
    {
        var limit = OutboxCodec.ChunkPayloadLimit(topic, contentType, properties, name, BrokerMaximumPacketSize, _options.ChunkBytes);
        if (limit < TransferLimits.MinChunkBytes)
        {
            throw new MessageTooLargeException(size, BrokerMaximumPacketSize ?? 0, $"what the broker's maximum packet size leaves for a chunk ({limit} bytes, less than the protocol's minimum chunk of {TransferLimits.MinChunkBytes} bytes): the maximum packet size");
        }

        return (int)limit;
    }

    /// <summary>Runs a store write, turning SQLite failures into <see cref="OutboxStorageException"/>s that say what to do.</summary>
    private async Task<int> StoreAsync(string what, Func<Task<int>> write)
    {
        try
        {
            return await write().ConfigureAwait(false);
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 13)
        {
            throw new OutboxStorageException($"cannot store the {what}: the disk holding the state folder {_options.StatePath} is full; messages stored before are intact, free space and send again ({ex.Message})", ex) { DiskFull = true };
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 5 or 6)
        {
            throw new OutboxStorageException($"cannot store the {what}: the outbox {_store.Path} is locked by another process; send again ({ex.Message})", ex) { Locked = true };
        }
        catch (SqliteException ex)
        {
            throw new OutboxStorageException($"cannot store the {what} in {_store.Path}: {ex.Message}", ex);
        }
    }

    /// <summary>Where the outbox stands now.</summary>
    public OutboxStatistics GetStatistics() => _store.ReadStatistics(_timeProvider.GetUtcNow());

    /// <summary>Reads the statistics of the outbox in <paramref name="statePath"/> without opening it for writing.</summary>
    public static OutboxStatistics? ReadStatistics(string statePath, TimeProvider? timeProvider = null)
    {
        var path = Path.Combine(statePath, OutboxStore.FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        var builder = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false };
        using var connection = new SqliteConnection(builder.ToString());
        connection.Open();
        return OutboxStore.ReadStatistics(connection, (timeProvider ?? TimeProvider.System).GetUtcNow());
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _store.DisposeAsync();
}
