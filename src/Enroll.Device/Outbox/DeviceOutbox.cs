using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using Enroll.Protocol;
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

    internal DeviceOutbox(IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<DeviceOutbox> logger, Func<string?> deviceId, OutboxMetrics? metrics = null)
    {
        _options = options.Value;
        _timeProvider = timeProvider;
        _deviceId = deviceId;
        _metrics = metrics;
        _ids = new TimeOrderedId(timeProvider);
        _limits = new OutboxLimits(_options.OutboxMaxMessages, _options.OutboxMaxBytes, _options.OutboxOverflow);
        _store = new OutboxStore(_options.StatePath, _options.OutboxDurability, timeProvider, logger);
        _metrics?.Observe(this);
    }

    /// <summary>Raised (in this process) after each committed send, so the publisher does not wait for its next look.</summary>
    internal event Action? MessageStored;

    internal OutboxStore Store => _store;

    /// <summary>
    /// The Maximum Packet Size the broker announced on the publisher's current connection (in this process), or null
    /// when unknown; <see cref="SendAsync"/> refuses messages that would not fit it.
    /// </summary>
    internal long? BrokerMaximumPacketSize { get; set; }

    /// <summary>
    /// Stores a message durably and returns its ID once committed. The message keeps the Device ID the device has now
    /// (null before its first registration; it is then published under the Device ID it gets). A send that finds no
    /// other send under way commits on the calling thread (the task is complete when it returns); concurrent sends are
    /// queued and share the next commit.
    /// </summary>
    /// <exception cref="ArgumentException">The stream name is not valid.</exception>
    /// <exception cref="OutboxFullException">The outbox is full and its policy is <see cref="OutboxOverflowPolicy.Reject"/>.</exception>
    /// <exception cref="MessageTooLargeException">
    /// The message, after compression, is larger than <see cref="EnrollDeviceOptions.MaxMessageBytes"/> or than the
    /// broker's announced Maximum Packet Size: it could never be delivered, so it is not stored.
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
        if (BrokerMaximumPacketSize is { } max)
        {
            // The packet as the publisher will build it (a Device ID not known yet counted at its longest).
            var topic = Protocol.Topics.EnrollTopics.DeviceMessages(deviceId ?? new string('x', 64), stream);
            var userProperties = new List<KeyValuePair<string, string>> { new("message_id", message.MessageId), new("created_at", "0000-00-00T00:00:00.000Z") };
            if (encoding is not null)
            {
                userProperties.Add(new("content_encoding", encoding));
            }

            userProperties.AddRange(properties?.Custom ?? new Dictionary<string, string>());
            var packet = OutboxCodec.PublishPacketSize(topic, properties?.ContentType, userProperties, stored.Length);
            if (packet > max)
            {
                throw new MessageTooLargeException(packet, max, "the broker's maximum packet size");
            }
        }

        int dropped;
        try
        {
            dropped = await _store.InsertAsync(message, _limits, cancellationToken).ConfigureAwait(false);
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 13)
        {
            throw new OutboxStorageException($"cannot store the message: the disk holding the state folder {_options.StatePath} is full; messages stored before are intact, free space and send again ({ex.Message})", ex) { DiskFull = true };
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 5 or 6)
        {
            throw new OutboxStorageException($"cannot store the message: the outbox {_store.Path} is locked by another process; send again ({ex.Message})", ex) { Locked = true };
        }
        catch (SqliteException ex)
        {
            throw new OutboxStorageException($"cannot store the message in {_store.Path}: {ex.Message}", ex);
        }

        if (dropped > 0)
        {
            _metrics?.Dropped(dropped);
        }

        MessageStored?.Invoke();
        return message.MessageId;
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
