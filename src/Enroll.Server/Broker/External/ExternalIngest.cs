using System.Buffers;
using System.Collections.Concurrent;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Server.Ingest;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Packets;

namespace Enroll.Server.Broker.External;

/// <summary>
/// Takes device messages from an external broker into the registry, through the same <see cref="MessageIngest"/> as the
/// embedded broker (validation, de-duplication on Device ID + message ID, sinks, metrics). A connection of its own,
/// <c>{id}-ingest</c>, because its session is the opposite of the request connection's: persistent (clean start false,
/// <see cref="EnrollServerOptions.BrokerSessionExpiry"/>), so messages published while this instance is away queue for it
/// at the broker, subscribed to <c>$share/enroll/enroll/v1/devices/+/messages/#</c> and
/// <c>$share/enroll/enroll/v1/devices/+/files</c> at QoS 1. Chunks of transfers (on the files topic, or on a messages
/// topic with <c>transfer_id</c>) go to <see cref="Files.TransferIngest"/> the same way.
/// <para>
/// Each message is acknowledged (PUBACK) only after it is committed: at least once end to end, stored once. A message
/// whose commit fails (a full disk, a database error) is not acknowledged; its commit is retried in place with a backoff
/// (1 s doubling to 30 s; the disk-full retry-after while the disk is full) rather than by reconnecting, because MQTT
/// redelivers only on a new connection and a reconnect would resend every message in flight. Should the instance stop
/// or the connection drop first, the broker redelivers the message on the next connection of this session, and the
/// de-duplication stores it once. A permanently invalid message is acknowledged (reason 0x99) and counted
/// <c>invalid</c>, so it never blocks the session's in-flight window.
/// </para>
/// <para>
/// The sender is the Device ID in the topic: the broker's ACL confines a device to its own
/// <c>enroll/v1/devices/{its id}/#</c> (deploy/mosquitto/enroll.acl, <c>pattern readwrite enroll/v1/devices/%u/#</c>), so
/// the topic names the device that published — the server does not see the publisher's credential here.
/// </para>
/// </summary>
internal sealed partial class ExternalIngest : ExternalBrokerConnection
{
    /// <summary>Every device's message topics; <c>#</c> because a stream may have several levels (<c>logs/kernel</c>).</summary>
    public const string MessageTopics = "enroll/v1/devices/+/messages/#";

    /// <summary>Every device's files topic (chunks of files).</summary>
    public const string FileTopics = "enroll/v1/devices/+/files";

    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(30);
    private readonly MessageIngest _ingest;
    private readonly Files.TransferIngest _transfers;
    private readonly IngestedMessageMapper _mapper;
    private readonly RegistryDiskFull _diskFull;
    private readonly ILogger<ExternalIngest> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<long, Task> _commits = new();
    private long _nextCommit;
    private int _connection;

    public ExternalIngest(IOptions<EnrollServerOptions> options, MessageIngest ingest, Files.TransferIngest transfers, TimeOrderedId ids, RegistryDiskFull diskFull, TimeProvider timeProvider, ILogger<ExternalIngest> logger)
        : base(options.Value, ClientIdStem(options.Value) + "-ingest", options.Value.BrokerSessionExpiry, timeProvider, logger)
    {
        _ingest = ingest;
        _transfers = transfers;
        _mapper = new IngestedMessageMapper(ids, timeProvider);
        _diskFull = diskFull;
        _logger = logger;
        Client.ApplicationMessageReceivedAsync += OnMessageAsync;
        Client.DisconnectedAsync += _ =>
        {
            // A PUBACK for a message of a closed connection must not go out on the next one (packet IDs are per connection).
            Interlocked.Increment(ref _connection);
            return Task.CompletedTask;
        };
    }

    /// <summary>Commits started and not yet acknowledged (or given up).</summary>
    public int InFlight => _commits.Count;

    protected override async Task OnConnectedAsync(MqttClientConnectResult result, CancellationToken cancellationToken)
    {
        await SubscribeAsync([Shared(MessageTopics, result.SharedSubscriptionAvailable), Shared(FileTopics, result.SharedSubscriptionAvailable)], cancellationToken).ConfigureAwait(false);
        LogConnected(_logger, Endpoint.ToString(), ClientId, result.IsSessionPresent, result.SharedSubscriptionAvailable);
    }

    private Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        if (_stopping.IsCancellationRequested)
        {
            // Not acknowledged: the broker gives it to this session again when the instance comes back.
            e.AutoAcknowledge = false;
            return Task.CompletedTask;
        }

        var message = e.ApplicationMessage;
        string deviceId;
        string? stream;
        if (EnrollTopics.TryParseDeviceMessageTopic(message.Topic, out deviceId, out var messages))
        {
            stream = messages;
        }
        else if (EnrollTopics.TryParseDeviceFileTopic(message.Topic, out deviceId))
        {
            stream = null;
        }
        else
        {
            // Matched the filter but is no device message (enroll/v1/devices/{id}/messages): nothing to store, never stuck.
            return Task.CompletedTask;
        }

        // The commit runs on its own, so messages in flight share group commits; the PUBACK waits for it.
        e.AutoAcknowledge = false;
        Func<Task<(IngestResult, string?)>> ingest;
        string label;
        if (stream is null || Files.TransferChunk.IsChunk(message.UserProperties))
        {
            // The payload is copied now: the received message's buffer is not kept past this handler.
            var payload = new ReadOnlySequence<byte>(message.Payload.ToArray());
            var properties = message.UserProperties;
            var contentType = message.ContentType;
            label = "chunk of transfer " + (properties?.FirstOrDefault(p => p.Name == Protocol.Transfers.TransferProperties.TransferId)?.ReadValueAsString() ?? "(none)");
            ingest = () => _transfers.Start(deviceId, stream, properties, contentType, payload);
        }
        else
        {
            var (ingested, encoding) = _mapper.Map(deviceId, stream, message.UserProperties, message.ContentType, message.Payload);
            label = ingested.MessageId;
            ingest = () => _ingest.IngestAsync(ingested, encoding, CancellationToken.None);
        }

        var id = Interlocked.Increment(ref _nextCommit);
        var connection = Volatile.Read(ref _connection);
        _commits[id] = Task.Run(async () =>
        {
            try
            {
                await CommitThenAcknowledgeAsync(e, deviceId, label, ingest, connection).ConfigureAwait(false);
            }
            finally
            {
                _commits.TryRemove(id, out _);
            }
        });
        return Task.CompletedTask;
    }

    private async Task CommitThenAcknowledgeAsync(MqttApplicationMessageReceivedEventArgs e, string deviceId, string label, Func<Task<(IngestResult, string?)>> ingest, int connection)
    {
        var delay = TimeSpan.FromSeconds(1);
        while (true)
        {
            try
            {
                // Not cancelled on stop: a commit under way finishes, and its message is acknowledged before the disconnect.
                var (result, reason) = await ingest().ConfigureAwait(false);
                _diskFull.Succeeded();
                LogIngested(_logger, deviceId, label, result);
                if (IngestAcks.IsRefusal(result))
                {
                    e.ReasonCode = IngestAcks.Received(result);
                    e.ResponseReasonString = reason;
                }

                break;
            }
            catch (Exception ex) when (DiskFull.Is(ex))
            {
                _diskFull.Refused("message", ex);
                delay = TimeSpan.FromSeconds(_diskFull.RetryAfterSeconds);
            }
#pragma warning disable CA1031 // a message that could not be stored must not be acknowledged; its commit is retried
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogCommitFailed(_logger, deviceId, label, delay, ex);
            }

            try
            {
                await Task.Delay(delay, TimeProvider, _stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return; // stopping: not acknowledged, redelivered to this session on its next connection
            }

            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks));
        }

        if (Volatile.Read(ref _connection) != connection || !Client.IsConnected)
        {
            return; // the connection it came on is gone: the broker redelivers it, and it is stored once
        }

        try
        {
            await e.AcknowledgeAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or ObjectDisposedException)
        {
            // The connection dropped as the PUBACK went out: redelivered on the next connection, stored once.
            LogAcknowledgeFailed(_logger, deviceId, label, ex.Message);
        }
    }

    /// <summary>Stops taking messages, lets the commits under way finish and acknowledges them, then disconnects.</summary>
    protected override async Task BeforeDisconnectAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_commits.Values).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public override void Dispose()
    {
        _stopping.Dispose();
        base.Dispose();
    }

    [LoggerMessage(43, LogLevel.Information, "Taking device messages from the external broker {Broker} as {ClientId} (session resumed: {SessionPresent}, shared subscription: {Shared})")]
    private static partial void LogConnected(ILogger logger, string broker, string clientId, bool sessionPresent, bool shared);

    [LoggerMessage(44, LogLevel.Warning, "Could not store message {MessageId} of device {DeviceId} from the external broker; not acknowledged, trying again in {Delay}")]
    private static partial void LogCommitFailed(ILogger logger, string deviceId, string messageId, TimeSpan delay, Exception exception);

    [LoggerMessage(46, LogLevel.Debug, "Took message {MessageId} of device {DeviceId} from the external broker: {Result}")]
    private static partial void LogIngested(ILogger logger, string deviceId, string messageId, IngestResult result);

    [LoggerMessage(45, LogLevel.Warning, "Could not acknowledge message {MessageId} of device {DeviceId} to the external broker ({Reason}); it was stored, and its redelivery will be stored once")]
    private static partial void LogAcknowledgeFailed(ILogger logger, string deviceId, string messageId, string reason);
}
