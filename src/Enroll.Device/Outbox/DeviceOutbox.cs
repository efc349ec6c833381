using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using Enroll.Protocol;
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
    /// Stores a message durably and returns its ID once committed. The message keeps the Device ID the device has now
    /// (null before its first registration; it is then published under the Device ID it gets). A send that finds no
    /// other send under way commits on the calling thread (the task is complete when it returns); concurrent sends are
    /// queued and share the next commit.
    /// </summary>
    /// <exception cref="ArgumentException">The stream name is not valid.</exception>
    /// <exception cref="OutboxFullException">The outbox is full and its policy is <see cref="OutboxOverflowPolicy.Reject"/>.</exception>
    public async Task<string> SendAsync(string stream, ReadOnlyMemory<byte> payload, MessageProperties? properties = null, CancellationToken cancellationToken = default)
    {
        if (!EnrollIdentifiers.IsValidStream(stream))
        {
            throw new ArgumentException($"stream must be one or more '/'-separated segments of {EnrollIdentifiers.Rule}", nameof(stream));
        }

        var (stored, encoding) = OutboxCodec.Encode(payload, _options.CompressAbove);
        var message = new OutboxInsert(
            _ids.Next(),
            _deviceId(),
            stream,
            _timeProvider.GetUtcNow(),
            properties?.ContentType,
            encoding,
            OutboxCodec.EncodeProperties(properties?.Custom),
            stored);
        var dropped = await _store.InsertAsync(message, _limits, cancellationToken).ConfigureAwait(false);
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

        var builder = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder { DataSource = path, Mode = Microsoft.Data.Sqlite.SqliteOpenMode.ReadOnly, Pooling = false };
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection(builder.ToString());
        connection.Open();
        return OutboxStore.ReadStatistics(connection, (timeProvider ?? TimeProvider.System).GetUtcNow());
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _store.DisposeAsync();
}
