using System.Collections.Concurrent;
using System.Globalization;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using Enroll.Protocol.Topics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// Delivers the outbox at least once: reads rows in order, publishes them with QoS 1 to
/// <c>enroll/v1/devices/{device_id}/messages/{stream}</c> (message ID, creation time and custom properties as MQTT 5 user
/// properties) with a bounded number in flight, deletes acknowledged rows in batches, and after any reconnect or restart
/// resends everything not yet acknowledged. Rows that cannot be decoded go to quarantine, never blocking the rest.
/// </summary>
public sealed class OutboxPublisher : BackgroundService
{
    /// <summary>How often the publisher looks for messages stored by another process (this process wakes it directly).</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    private const int DeleteBatch = 256;
    private readonly DeviceOutbox _outbox;
    private readonly DeviceSession _session;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly OutboxMetrics? _metrics;
    private long _publishedUnsaved;
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly DeviceHealth _health;
    private readonly Jitter _jitter;

    internal OutboxPublisher(DeviceOutbox outbox, DeviceSession session, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<OutboxPublisher> logger, DeviceHealth health, Jitter jitter, OutboxMetrics? metrics = null)
    {
        _health = health;
        _jitter = jitter;
        _outbox = outbox;
        _session = session;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _metrics = metrics;
        _outbox.MessageStored += () => _wake.TrySetResult();
    }

    /// <summary>Raised when the outbox became empty (every stored message acknowledged).</summary>
    public event Action? Drained;

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Supervisor.RunAsync(DeviceComponents.Publisher, RunAsync, _health, _jitter, _timeProvider, _logger, stoppingToken);

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var link = await _session.ConnectAsync(stoppingToken).ConfigureAwait(false);
                await DrainAsync(link, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (EnrollException ex)
            {
                // The connection failed under us; the session reconnects, and unacknowledged rows go out again.
                Log.PublisherInterrupted(_logger, ex.Message);
            }
        }
    }

    private async Task DrainAsync(DeviceLink link, CancellationToken stoppingToken)
    {
        using var window = new SemaphoreSlim(_options.PublishWindow, _options.PublishWindow);
        var acknowledged = new ConcurrentQueue<long>();
        var failure = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inFlight = new ConcurrentDictionary<long, Task>();
        var flushing = Task.CompletedTask;
        long cursor = 0;
        try
        {
            while (link.IsCurrent && !failure.Task.IsCompleted)
            {
                var wake = _wake;
                var rows = _outbox.Store.ReadAfter(cursor, _options.PublishWindow * 4);
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

                    using var poll = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    await Task.WhenAny(wake.Task, failure.Task, Task.Delay(PollInterval, _timeProvider, poll.Token)).ConfigureAwait(false);
                    await poll.CancelAsync().ConfigureAwait(false);
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

                    await window.WaitAsync(stoppingToken).ConfigureAwait(false);
                    if (failure.Task.IsCompleted || !link.IsCurrent)
                    {
                        window.Release();
                        break;
                    }

                    var publish = PublishAsync(link, message, window, acknowledged, failure, stoppingToken);
                    inFlight[message.Sequence] = publish;
                    _ = publish.ContinueWith(_ => inFlight.TryRemove(message.Sequence, out var _), TaskScheduler.Default);
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
            // Let what is in flight finish (acknowledged or failed), then delete what the broker acknowledged.
            await Task.WhenAll(inFlight.Values).ConfigureAwait(false);
            await flushing.ConfigureAwait(false);
            await FlushAsync(acknowledged, CancellationToken.None).ConfigureAwait(false);
        }

        if (failure.Task.IsCompleted)
        {
            throw failure.Task.Result as EnrollException ?? new EnrollConnectionException(failure.Task.Result.Message, failure.Task.Result);
        }
    }

    private async Task PublishAsync(DeviceLink link, OutboxMessage message, SemaphoreSlim window, ConcurrentQueue<long> acknowledged, TaskCompletionSource<Exception> failure, CancellationToken stoppingToken)
    {
        try
        {
            var properties = new List<KeyValuePair<string, string>>(message.Properties.Count + 3)
            {
                new("message_id", message.MessageId),
                new("created_at", message.CreatedAt.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture)),
            };
            if (message.ContentEncoding is { } encoding)
            {
                properties.Add(new("content_encoding", encoding));
            }

            foreach (var property in message.Properties)
            {
                if (property.Key is not ("message_id" or "created_at" or "content_encoding"))
                {
                    properties.Add(property);
                }
            }

            _metrics?.SentOne();
            Interlocked.Increment(ref _publishedUnsaved);
            await link.Connection.PublishAsync(
                new OutgoingMessage(EnrollTopics.DeviceMessages(link.DeviceId, message.Stream), message.Payload, 1)
                {
                    ContentType = message.ContentType,
                    UserProperties = properties,
                },
                stoppingToken).ConfigureAwait(false);
            acknowledged.Enqueue(message.Sequence);
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
            await _outbox.Store.DeleteAsync(batch, published, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            // Not saved: count these publishes with the next batch.
            Interlocked.Add(ref _publishedUnsaved, published);
            throw;
        }

        if (batch.Count > 0)
        {
            _metrics?.AcknowledgedMany(batch.Count);
        }
    }

    private async Task QuarantineAsync(OutboxRow row, string reason, CancellationToken cancellationToken)
    {
        Log.Quarantined(_logger, row.Sequence, row.MessageId ?? "?", reason);
        await _outbox.Store.QuarantineAsync(row, reason, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        _metrics?.QuarantinedOne();
    }
}
