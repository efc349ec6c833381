using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.ExceptionServices;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using Enroll.Device.Requests;
using Enroll.Device.State;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Protocol.Transfers;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// Delivers the outbox at least once: reads rows in order, publishes them with QoS 1 to
/// <c>enroll/v1/devices/{device_id}/messages/{stream}</c> (message ID, creation time and custom properties as MQTT 5 user
/// properties) with a bounded number in flight, deletes acknowledged rows in batches, and after any reconnect or restart
/// resends everything not yet acknowledged. Rows that cannot be decoded, that the broker refuses for good (see
/// <see cref="PubAckReasons"/>) or that are larger than the broker's Maximum Packet Size go to quarantine with the reason,
/// never blocking the rest. A transient refusal (PUBACK 0x80, 0x97 for a message, ...), a locked outbox file or a full disk pauses
/// delivery with a jittered exponential backoff (<see cref="EnrollDeviceOptions.InitialBackoff"/> doubling up to
/// <see cref="EnrollDeviceOptions.MaxBackoff"/>), reported to <see cref="DeviceHealth"/> for component
/// <c>publisher</c> and cleared by the next acknowledgement; after a transient refusal one message at a time probes the
/// broker until one is acknowledged.
/// <para>
/// Transfers (a message too large for one packet, a file) go out as their chunk rows, each with the transfer's MQTT 5
/// user properties (ID, index, count, chunk size, size, SHA-256 of the whole; a file's name) on the stream's topic or on
/// <c>enroll/v1/devices/{device_id}/files</c>, once the transfer is ready (a file still being copied waits). Reads are
/// bounded by bytes as well as rows. A chunk refused for good (or 0x97, the server's file quota) moves what is left of
/// its transfer to quarantine as one row, reported like other quarantines. After each (re)connect the publisher asks the
/// server about every transfer with rows left (<c>transfers/status</c>) and sends only the chunks the server lacks.
/// </para>
/// <para>
/// While a full batch goes out, the next one is read on another thread, so the window does not stand still during a
/// read (256 rows take about a millisecond on a small machine).
/// </para>
/// </summary>
public sealed class OutboxPublisher : BackgroundService
{
    /// <summary>How often the change watch looks for messages another process stored (this process wakes the publisher directly).</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    /// <summary>How long a delete may wait for another process's write lock before the publisher reports StorageLocked.</summary>
    internal static readonly TimeSpan LockReportAfter = TimeSpan.FromSeconds(2);

    private const int DeleteBatch = 256;

    /// <summary>
    /// The most payload bytes one read of the outbox pulls into memory: with 128 KiB chunks a read of
    /// <see cref="EnrollDeviceOptions.PublishWindow"/> × 4 rows would otherwise hold tens of MiB. The publisher holds at
    /// most two reads: the batch going out and, when that batch was full, the next one read ahead.
    /// </summary>
    internal const long ReadBudgetBytes = 4 * 1024 * 1024;
    private readonly DeviceOutbox _outbox;
    private readonly DeviceSession _session;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly OutboxMetrics? _metrics;
    private long _publishedUnsaved;

    // Acknowledged rows not deleted yet; they survive a failed drain, so a delete that failed is retried before anything
    // is read (and sent) again.
    private readonly ConcurrentQueue<long> _acknowledged = new();

    // Rows acknowledged or quarantined, ever: a failure after progress starts the backoff from its first step.
    private long _progress;
    private int _failures;
    private volatile bool _probing;
    private string? _lastLoggedReason;
    private long _lastLoggedAt;
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly DeviceHealth _health;
    private readonly Jitter _jitter;
    private readonly ServerRequestSender? _requests;

    // Acknowledged rows not deleted yet, by sequence: a read that starts again from the start skips them.
    private readonly ConcurrentDictionary<long, byte> _acknowledgedSet = new();

    // Transfers quarantined by this process: their rows still in a read batch are not sent.
    private readonly ConcurrentDictionary<string, byte> _failedTransfers = new(StringComparer.Ordinal);

    // Set when a transfer became ready in this process: its rows may lie behind the read cursor.
    private volatile bool _transferReadied;

    private bool _watchingConnection;

    internal OutboxPublisher(DeviceOutbox outbox, DeviceSession session, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<OutboxPublisher> logger, DeviceHealth health, Jitter jitter, OutboxMetrics? metrics = null, ServerRequestSender? requests = null)
    {
        _requests = requests;
        _health = health;
        _jitter = jitter;
        _outbox = outbox;
        _session = session;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _metrics = metrics;
        _outbox.MessageStored += () => _wake.TrySetResult();
        _outbox.TransferReadied += () =>
        {
            _transferReadied = true;
            _wake.TrySetResult();
        };
    }

    /// <summary>Raised when the outbox became empty (every stored message acknowledged).</summary>
    public event Action? Drained;

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.WhenAll(
        Supervisor.RunAsync(DeviceComponents.Publisher, RunAsync, _health, _jitter, _timeProvider, _logger, stoppingToken),
        StateChangeWatch.RunAsync(_outbox.Store.ChangeVersion, () => _wake.TrySetResult(), PollInterval, _timeProvider, stoppingToken));

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        var progressAtLastFailure = -1L;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // Acknowledged rows a failed drain could not delete go first, so they are not read and sent again.
                await FlushAsync(_acknowledged, stoppingToken).ConfigureAwait(false);
                var link = await _session.ConnectAsync(stoppingToken).ConfigureAwait(false);
                if (!_watchingConnection)
                {
                    // An idle drain waits for a wake-up only: losing the connection is one.
                    link.Connection.Disconnected += _ => _wake.TrySetResult();
                    _watchingConnection = true;
                }

                _outbox.BrokerMaximumPacketSize = link.Connection.MaximumPacketSize;
                await DrainAsync(link, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (Classify(ex) is { } fault)
            {
                var progress = Interlocked.Read(ref _progress);
                _failures = progress != progressAtLastFailure ? 1 : _failures + 1;
                progressAtLastFailure = progress;
                var delay = _jitter.Backoff(_failures, _options.InitialBackoff, _options.MaxBackoff);
                if (fault.Kind is { } kind)
                {
                    _health.Report(DeviceComponents.Publisher, kind, $"{fault.Reason} (trying again in {delay.TotalSeconds:0.#} s)");
                    LogBackoff(kind, fault.Reason, delay);
                }
                else if (_failures == 1)
                {
                    // The connection failed under us after delivering something: the session reconnects at once, and
                    // unacknowledged rows go out again.
                    Log.PublisherInterrupted(_logger, ex.Message);
                    continue;
                }
                else
                {
                    // Failed again without delivering anything (a connection that breaks on every try): back off.
                    LogBackoff(DeviceFaultKind.BrokerUnreachable, ex.Message, delay);
                }

                await Task.Delay(delay, _timeProvider, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// What a drain failure means: a fault to report and back off from, a broken connection (no kind: reconnect), or
    /// null for anything else, which the <see cref="Supervisor"/> logs, reports and restarts after.
    /// </summary>
    private (DeviceFaultKind? Kind, string Reason)? Classify(Exception ex)
    {
        switch (ex)
        {
            case EnrollConnectionException { InnerException: PublishRefusedException refusal }:
                _probing = true;
                return (DeviceFaultKind.ServerBusy, $"the broker refused a message for now: {refusal.Message}");
            case SqliteException { SqliteErrorCode: 5 or 6 }:
                return (DeviceFaultKind.StorageLocked, $"the outbox {_outbox.Store.Path} is locked by another process ({ex.Message})");
            case SqliteException { SqliteErrorCode: 13 }:
                return (DeviceFaultKind.DiskFull, $"the disk holding the state folder {Path.GetDirectoryName(_outbox.Store.Path)} is full; acknowledged messages cannot be deleted ({ex.Message})");
            case EnrollException:
                return (null, ex.Message);
            default:
                return null;
        }
    }

    /// <summary>Logs a backoff once per distinct reason, and at most once a minute for the same one.</summary>
    private void LogBackoff(DeviceFaultKind kind, string reason, TimeSpan delay)
    {
        var now = _timeProvider.GetTimestamp();
        if (reason != _lastLoggedReason || _timeProvider.GetElapsedTime(_lastLoggedAt, now) >= TimeSpan.FromMinutes(1))
        {
            _lastLoggedReason = reason;
            _lastLoggedAt = now;
            Log.PublisherBackingOff(_logger, kind, reason, delay);
        }
    }

    /// <summary>
    /// The broker acknowledged a message: whatever fault the publisher (or its supervisor) reported is over, except a
    /// storage fault, which only a successful delete clears.
    /// </summary>
    private void Delivered()
    {
        Interlocked.Increment(ref _progress);
        _probing = false;
        if (_health.FaultOf(DeviceComponents.Publisher) is { Kind: not (DeviceFaultKind.StorageLocked or DeviceFaultKind.DiskFull) })
        {
            Recovered();
        }
    }

    private void Recovered()
    {
        _health.Clear(DeviceComponents.Publisher);
        if (_failures > 0)
        {
            Log.PublisherResumed(_logger, _failures);
        }

        _lastLoggedReason = null;
    }

    private async Task DrainAsync(DeviceLink link, CancellationToken stoppingToken)
    {
        using var window = new SemaphoreSlim(_options.PublishWindow, _options.PublishWindow);
        var acknowledged = _acknowledged;
        var failure = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inFlight = new ConcurrentDictionary<long, Task>();
        var flushing = Task.CompletedTask;
        long cursor = 0;
        var readyGeneration = _outbox.Store.ReadyGeneration();
        ReadAhead? ahead = null;
        try
        {
            await ResumeTransfersAsync(link, stoppingToken).ConfigureAwait(false);
            while (link.IsCurrent && !failure.Task.IsCompleted)
            {
                var wake = _wake;
                if (_transferReadied)
                {
                    _transferReadied = false;
                    cursor = Rewind(cursor, ref readyGeneration);
                }

                var rows = await ReadAsync(cursor, ahead).ConfigureAwait(false);
                ahead = null;
                if (rows.Count == ReadRows)
                {
                    // A full batch of small rows: more are likely waiting. Read them while this batch goes out, so the
                    // window does not stand still during the next read.
                    var after = rows[^1].Sequence;
                    ahead = new ReadAhead(after, Task.Run(() => _outbox.Store.ReadAfter(after, ReadRows, ReadBudgetBytes), CancellationToken.None));
                }

                if (rows.Count == 0 && cursor > 0 && Rewind(cursor, ref readyGeneration) == 0)
                {
                    // A transfer became ready (perhaps in another process) with rows behind the cursor: look again from the start.
                    cursor = 0;
                    continue;
                }

                if (rows.Count == 0 && !inFlight.IsEmpty)
                {
                    // Nothing new to send: wait for what is in flight (or a new message) before deleting and looking again.
                    await Task.WhenAny(Task.WhenAll(inFlight.Values), wake.Task, failure.Task).WaitAsync(stoppingToken).ConfigureAwait(false);
                    if (wake.Task.IsCompleted)
                    {
                        Interlocked.CompareExchange(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), wake);
                    }

                    continue;
                }

                if (rows.Count == 0)
                {
                    await flushing.ConfigureAwait(false);
                    await FlushAsync(acknowledged, stoppingToken).ConfigureAwait(false);
                    if (inFlight.IsEmpty && _outbox.GetStatistics().Depth == 0)
                    {
                        Drained?.Invoke();
                    }

                    // Idle: a message stored here, a commit from another process (the change watch), a lost connection
                    // or a failed publish wakes the drain; nothing is read until then.
                    if (link.IsCurrent)
                    {
                        await Task.WhenAny(wake.Task, failure.Task).WaitAsync(stoppingToken).ConfigureAwait(false);
                    }

                    if (wake.Task.IsCompleted)
                    {
                        Interlocked.CompareExchange(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), wake);
                    }

                    stoppingToken.ThrowIfCancellationRequested();
                    continue;
                }

                foreach (var row in rows)
                {
                    cursor = row.Sequence;
                    if (inFlight.ContainsKey(row.Sequence) || _acknowledgedSet.ContainsKey(row.Sequence)
                        || (row.Transfer is { } transfer && _failedTransfers.ContainsKey(transfer.TransferId)))
                    {
                        // Read again after a rewind (sent, or its transfer refused, already).
                        continue;
                    }

                    if (!OutboxCodec.TryDecode(row, out var message, out var reason))
                    {
                        await QuarantineAsync(row, reason, stoppingToken).ConfigureAwait(false);
                        continue;
                    }

                    if (message.DeviceId is { } recordedUnder && recordedUnder != link.DeviceId)
                    {
                        await QuarantineAsync(row, $"recorded under device {recordedUnder}, but the device is now {link.DeviceId}", stoppingToken).ConfigureAwait(false);
                        continue;
                    }

                    if (message.Chunk is not null && _options.ProtocolVersion == MqttProtocol.V311)
                    {
                        // MQTT 3.1.1 would drop the chunk's user properties and the server would store each chunk as a message.
                        await QuarantineAsync(row, "chunks need MQTT 5 user properties, and this device speaks MQTT 3.1.1 (ProtocolVersion V311)", stoppingToken, DeviceFaultKind.MessageRefused).ConfigureAwait(false);
                        continue;
                    }

                    if (TooLarge(link, message) is { } tooLarge)
                    {
                        // Never sent: a packet over the broker's limit only breaks the connection, again and again.
                        await QuarantineAsync(row, tooLarge, stoppingToken, DeviceFaultKind.MessageTooLarge).ConfigureAwait(false);
                        continue;
                    }

                    await window.WaitAsync(stoppingToken).ConfigureAwait(false);
                    if (failure.Task.IsCompleted || !link.IsCurrent)
                    {
                        window.Release();
                        break;
                    }

                    var publish = PublishAsync(link, row, message, window, acknowledged, failure, stoppingToken);
                    inFlight[message.Sequence] = publish;
                    // Removed where the acknowledgement completes it: a hand-off to the thread pool per message costs more than the removal.
                    _ = publish.ContinueWith(_ => inFlight.TryRemove(message.Sequence, out var _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                    if (_probing)
                    {
                        // After a transient refusal one message probes the broker; the window opens once it is acknowledged.
                        await publish.ConfigureAwait(false);
                    }
                    if (acknowledged.Count >= DeleteBatch && flushing.IsCompleted)
                    {
                        // Deletes commit in the background, one batch at a time, while publishing goes on.
                        await flushing.ConfigureAwait(false);
                        flushing = Task.Run(() => FlushAsync(acknowledged, stoppingToken), CancellationToken.None);
                    }
                }
            }
        }
        finally
        {
            // Let what is in flight finish (acknowledged or failed). A background delete that failed put its rows back
            // in the queue; the next drain deletes them first (and reports the failure if it persists).
            await Task.WhenAll(inFlight.Values).ConfigureAwait(false);
            if (ahead is not null)
            {
                try
                {
                    await ahead.Rows.ConfigureAwait(false);
                }
#pragma warning disable CA1031 // a read ahead nobody uses: waited for so it never outlives the drain, its failure is moot
                catch (Exception)
#pragma warning restore CA1031
                {
                }
            }

            try
            {
                await flushing.ConfigureAwait(false);
            }
#pragma warning disable CA1031 // observed here so it is never unobserved; its rows are back in the queue
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }

        await FlushAsync(acknowledged, CancellationToken.None).ConfigureAwait(false);
        if (failure.Task.IsCompleted)
        {
            ExceptionDispatchInfo.Throw(failure.Task.Result);
        }
    }

    private int ReadRows => _options.PublishWindow * 4;

    /// <summary>
    /// The rows after <paramref name="cursor"/>: those read ahead when they start there and found any (an empty read ahead
    /// may predate a message stored since, whose wake-up was taken before it), else read now.
    /// </summary>
    private async ValueTask<List<OutboxRow>> ReadAsync(long cursor, ReadAhead? ahead)
    {
        if (ahead is not null)
        {
            try
            {
                var rows = await ahead.Rows.ConfigureAwait(false);
                if (ahead.After == cursor && rows.Count > 0)
                {
                    return rows;
                }
            }
#pragma warning disable CA1031 // read again below: a fault that lasts is thrown there, where the drain classifies it
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }

        return _outbox.Store.ReadAfter(cursor, ReadRows, ReadBudgetBytes);
    }

    /// <summary>A read of the rows after <see cref="After"/> started while the batch before it goes out.</summary>
    private sealed record ReadAhead(long After, Task<List<OutboxRow>> Rows);

    /// <summary>Why <paramref name="message"/> cannot be sent on <paramref name="link"/>, or null when it fits.</summary>
    private string? TooLarge(DeviceLink link, OutboxMessage message)
    {
        if (link.Connection.MaximumPacketSize is { } max)
        {
            var packet = OutboxCodec.PublishPacketSize(Topic(link, message), message.ContentType, UserProperties(message), message.Payload.Length);
            if (packet > max)
            {
                return message.Chunk is { } chunk
                    ? $"its chunks of {chunk.ChunkSize} bytes are too large for the broker's maximum packet size {max} (a {packet}-byte packet); send it again with a smaller ChunkBytes"
                    : $"too large for the broker's maximum packet size {max} (a {packet}-byte packet)";
            }
        }

        return message.Chunk is null && message.Payload.Length > _options.MaxMessageBytes
            ? $"too large for the maximum message size {_options.MaxMessageBytes} (MaxMessageBytes; {message.Payload.Length} bytes stored)"
            : null;
    }

    /// <summary>The topic a row goes to: its stream's messages topic, or the device's files topic for a file's chunk.</summary>
    private static string Topic(DeviceLink link, OutboxMessage message) =>
        message.Chunk is { IsFile: true } ? EnrollTopics.DeviceFiles(link.DeviceId) : EnrollTopics.DeviceMessages(link.DeviceId, message.Stream);

    private static List<KeyValuePair<string, string>> UserProperties(OutboxMessage message)
    {
        var createdAt = new KeyValuePair<string, string>("created_at", message.CreatedAt.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
        if (message.Chunk is { IsFile: true } file)
        {
            // A file's chunk: the transfer's properties (its name among them) and when the file was stored.
            var chunkProperties = new List<KeyValuePair<string, string>>(8) { createdAt };
            OutboxCodec.AddChunkProperties(chunkProperties, file);
            return chunkProperties;
        }

        var properties = new List<KeyValuePair<string, string>>(message.Properties.Count + 10)
        {
            new("message_id", message.MessageId),
            createdAt,
        };
        if (message.ContentEncoding is { } encoding)
        {
            properties.Add(new("content_encoding", encoding));
        }

        foreach (var property in message.Properties)
        {
            if (property.Key is not ("message_id" or "created_at" or "content_encoding") && (message.Chunk is null || !TransferProperties.All.Contains(property.Key)))
            {
                properties.Add(property);
            }
        }

        if (message.Chunk is { } chunk)
        {
            // A message too large for one packet: every chunk carries the message's properties and the transfer's.
            OutboxCodec.AddChunkProperties(properties, chunk);
        }

        return properties;
    }

    private async Task PublishAsync(DeviceLink link, OutboxRow row, OutboxMessage message, SemaphoreSlim window, ConcurrentQueue<long> acknowledged, TaskCompletionSource<Exception> failure, CancellationToken stoppingToken)
    {
        try
        {
            _metrics?.SentOne();
            Interlocked.Increment(ref _publishedUnsaved);
            try
            {
                await link.Connection.PublishAsync(
                    new OutgoingMessage(Topic(link, message), message.Payload, 1)
                    {
                        ContentType = message.ContentType,
                        UserProperties = UserProperties(message),
                    },
                    stoppingToken).ConfigureAwait(false);
            }
            catch (EnrollConnectionException ex) when (ex.InnerException is PublishRefusedException refusal
                && (message.Chunk is null ? PubAckReasons.IsPermanent(refusal.ReasonCode) : PubAckReasons.IsPermanentForChunk(refusal.ReasonCode)))
            {
                // Refused for good: sending it again can only get the same answer. The rows behind it go on.
                await QuarantineAsync(row, $"refused by the broker: {refusal.Message}", stoppingToken, DeviceFaultKind.MessageRefused).ConfigureAwait(false);
                return;
            }

            _acknowledgedSet[message.Sequence] = 0;
            acknowledged.Enqueue(message.Sequence);
            Delivered();
        }
#pragma warning disable CA1031 // any failure stops this drain; the row stays and is resent after reconnecting
        catch (Exception ex)
#pragma warning restore CA1031
        {
            failure.TrySetResult(ex);
        }
        finally
        {
            window.Release();
        }
    }

    private async Task FlushAsync(ConcurrentQueue<long> acknowledged, CancellationToken cancellationToken)
    {
        var batch = new List<long>();
        while (acknowledged.TryDequeue(out var sequence))
        {
            batch.Add(sequence);
        }

        var published = Interlocked.Exchange(ref _publishedUnsaved, 0);
        try
        {
            // Off this thread: a lone write commits inline, and waits there for another process's lock.
            var delete = Task.Run(() => _outbox.Store.DeleteAsync(batch, published, cancellationToken), CancellationToken.None);
            if (!delete.IsCompleted)
            {
                using var watch = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                await Task.WhenAny(delete, Task.Delay(LockReportAfter, _timeProvider, watch.Token)).ConfigureAwait(false);
                if (!delete.IsCompleted && !cancellationToken.IsCancellationRequested)
                {
                    // SQLite waits up to its busy timeout for another process's write lock: say so while it waits.
                    var reason = $"waiting for the write lock on the outbox {_outbox.Store.Path}, held by another process; acknowledged messages are not deleted yet";
                    _health.Report(DeviceComponents.Publisher, DeviceFaultKind.StorageLocked, reason);
                    LogBackoff(DeviceFaultKind.StorageLocked, reason, TimeSpan.Zero);
                }

                await watch.CancelAsync().ConfigureAwait(false);
            }

            await delete.ConfigureAwait(false);
        }
        catch
        {
            // Not saved: count these publishes with the next batch, and delete these rows with it.
            Interlocked.Add(ref _publishedUnsaved, published);
            foreach (var sequence in batch)
            {
                acknowledged.Enqueue(sequence);
            }

            throw;
        }

        if (batch.Count > 0)
        {
            _metrics?.AcknowledgedMany(batch.Count);
            foreach (var sequence in batch)
            {
                _acknowledgedSet.TryRemove(sequence, out _);
            }
        }

        if ((batch.Count > 0 || published > 0) && _health.FaultOf(DeviceComponents.Publisher) is { Kind: DeviceFaultKind.StorageLocked or DeviceFaultKind.DiskFull })
        {
            // A write went through: the outbox file is writable again.
            Recovered();
        }
    }

    private async Task QuarantineAsync(OutboxRow row, string reason, CancellationToken cancellationToken, DeviceFaultKind? fault = null)
    {
        if (row.Transfer is { } transfer)
        {
            await QuarantineTransferAsync(transfer.TransferId, transfer.Name, reason, fault, cancellationToken).ConfigureAwait(false);
            return;
        }

        Log.Quarantined(_logger, row.Sequence, row.MessageId ?? "?", reason);
        await _outbox.Store.QuarantineAsync(row, reason, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        _metrics?.QuarantinedOne();
        Interlocked.Increment(ref _progress);
        if (fault is { } kind)
        {
            // Its own component, so later deliveries do not clear it: the agent keeps saying it quarantined something.
            _health.Report(DeviceComponents.Quarantine, kind, $"message {row.MessageId} moved to quarantine: {reason}");
        }
    }

    /// <summary>
    /// A transfer cannot be delivered (one of its chunks refused for good, undecodable or too large, or the server refused
    /// or lost it): what is left of it moves to quarantine with the reason and it is marked failed, once.
    /// </summary>
    private async Task QuarantineTransferAsync(string transferId, string? name, string reason, DeviceFaultKind? fault, CancellationToken cancellationToken)
    {
        _failedTransfers[transferId] = 0;
        if (!await _outbox.Store.QuarantineTransferAsync(transferId, reason, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false))
        {
            // Another chunk's refusal moved it already.
            return;
        }

        Log.TransferQuarantined(_logger, transferId, reason);
        _metrics?.QuarantinedOne();
        Interlocked.Increment(ref _progress);
        var what = name is null ? $"message transfer {transferId}" : $"file '{name}' (transfer {transferId})";
        _health.Report(DeviceComponents.Quarantine, fault ?? DeviceFaultKind.MessageRefused, $"{what} moved to quarantine: {reason}");
    }

    /// <summary>The cursor to read from: 0 when a transfer became ready since <paramref name="generation"/> (its rows may lie behind the cursor).</summary>
    private long Rewind(long cursor, ref long generation)
    {
        var now = _outbox.Store.ReadyGeneration();
        if (now == generation)
        {
            return cursor;
        }

        generation = now;
        return 0;
    }

    /// <summary>
    /// After a (re)connect, asks the server what it holds of every transfer with rows left (<c>transfers/status</c>) and
    /// acts on the answer: chunks it holds are deleted (counted acknowledged), a complete transfer is deleted whole, a
    /// refused one or one the server lost after acknowledging chunks goes to quarantine, and an unknown one is sent whole.
    /// When the server does not answer (an older server, a broker without one) everything left is sent: the server keeps
    /// each chunk once.
    /// </summary>
    private async Task ResumeTransfersAsync(DeviceLink link, CancellationToken stoppingToken)
    {
        if (_requests is null)
        {
            return;
        }

        foreach (var transfer in _outbox.Store.PendingTransfers())
        {
            if (!link.IsCurrent)
            {
                return;
            }

            TransferStatusResponse answer;
            using (var timeout = new CancellationTokenSource(_options.AttemptTimeout * 2 + _options.InitialBackoff, _timeProvider))
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, timeout.Token))
            {
                try
                {
                    answer = await _requests.SendAsync(
                        EnrollRequests.TransferStatus,
                        requestId => new TransferStatusRequest { TransferId = transfer.TransferId, RequestId = requestId },
                        () => link.Connection.Credentials is { IsAuthenticated: true } current && current.Username == link.DeviceId
                            ? current
                            : throw new EnrollConnectionException("not connected as the device"),
                        _ => EnrollTopics.DeviceResponses(link.DeviceId),
                        null,
                        linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                {
                    // No answer in time: the server does not know the request. Do not ask about the others either.
                    Log.TransferStatusFailed(_logger, transfer.TransferId, "no answer in time");
                    return;
                }
                catch (EnrollException ex)
                {
                    Log.TransferStatusFailed(_logger, transfer.TransferId, ex.Message);
                    continue;
                }
            }

            var deleted = 0;
            switch (answer.State)
            {
                case TransferStates.Complete:
                    deleted = await _outbox.Store.DeleteChunksAsync(transfer.TransferId, [(0, int.MaxValue)], stoppingToken).ConfigureAwait(false);
                    break;
                case TransferStates.Receiving when answer.ChunkCount == transfer.ChunkCount && answer.Received is { } received:
                    var ranges = received.Where(r => r is { Length: 2 } && r[0] <= r[1]).Select(r => (r[0], r[1])).ToList();
                    deleted = await _outbox.Store.DeleteChunksAsync(transfer.TransferId, ranges, stoppingToken).ConfigureAwait(false);
                    break;
                case TransferStates.Refused:
                    await QuarantineTransferAsync(transfer.TransferId, transfer.Name, $"refused by the server: {answer.Reason ?? "no reason given"}", DeviceFaultKind.MessageRefused, stoppingToken).ConfigureAwait(false);
                    break;
                case TransferStates.Unknown when transfer.Acknowledged > 0:
                    await QuarantineTransferAsync(
                        transfer.TransferId,
                        transfer.Name,
                        $"the server no longer holds it although it acknowledged {transfer.Acknowledged} of its {transfer.ChunkCount} chunks: it expired there (no chunk arrived for too long); send it again",
                        DeviceFaultKind.MessageRefused,
                        stoppingToken).ConfigureAwait(false);
                    break;
            }

            if (deleted > 0)
            {
                Interlocked.Increment(ref _progress);
                _metrics?.AcknowledgedMany(deleted);
            }

            Log.TransferResumed(_logger, transfer.TransferId, answer.State ?? "?", deleted, transfer.RowsLeft - deleted);
        }
    }
}
