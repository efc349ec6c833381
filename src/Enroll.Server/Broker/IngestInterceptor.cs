using System.Collections.Concurrent;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Files;
using Enroll.Server.Ingest;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace Enroll.Server.Broker;

/// <summary>
/// Takes the messages a device publishes on its own <c>enroll/v1/devices/{id}/messages/{stream}</c> topics into the
/// registry, and the chunks of transfers it publishes there or on its own <c>enroll/v1/devices/{id}/files</c> topic into
/// <see cref="TransferIngest"/>, and holds the broker's acknowledgement until the message or chunk is stored: what could
/// not be stored is refused, never acknowledged. QoS 1 publishes start their ingestion as their packet arrives (so
/// messages in flight from one device share group commits, and chunks in flight share flushes) and their PUBACK waits;
/// others are stored before the broker answers them.
/// </summary>
internal sealed class IngestInterceptor(MessageIngest ingest, TransferIngest transfers, TimeOrderedId ids, TimeProvider timeProvider, RegistryDiskFull diskFull, ILogger logger)
{
    private readonly IngestedMessageMapper _mapper = new(ids, timeProvider);

    /// <summary>The per-session table of ingestions whose PUBACK waits, set on a device's session when it connects.</summary>
    public static ConcurrentDictionary<ushort, Task<(IngestResult, string?)>> NewPendingAcks() => new();

    /// <summary>True when <paramref name="topic"/> is one of <paramref name="deviceId"/>'s own message topics.</summary>
    public static bool IsOwnMessage(string topic, string? deviceId, out string stream)
    {
        stream = string.Empty;
        return deviceId is not null && EnrollTopics.TryParseDeviceMessageTopic(topic, out var sender, out stream) && sender == deviceId;
    }

    /// <summary>
    /// True when <paramref name="topic"/> is one of <paramref name="deviceId"/>'s own topics the server takes publishes
    /// from: a messages topic (<paramref name="stream"/> set) or its files topic (<paramref name="stream"/> null).
    /// </summary>
    public static bool IsOwnIngest(string topic, string? deviceId, out string? stream)
    {
        if (IsOwnMessage(topic, deviceId, out var messages))
        {
            stream = messages;
            return true;
        }

        stream = null;
        return deviceId is not null && EnrollTopics.TryParseDeviceFileTopic(topic, out var sender) && sender == deviceId;
    }

    /// <summary>Starts taking a device's publish: a chunk of a transfer (files topic, or a messages topic with <c>transfer_id</c>), else a message.</summary>
    private Task<(IngestResult, string?)> Start(string deviceId, string? stream, IReadOnlyList<MqttUserProperty>? userProperties, string? contentType, System.Buffers.ReadOnlySequence<byte> payload, CancellationToken cancellationToken)
    {
        if (stream is null || TransferChunk.IsChunk(userProperties))
        {
            return transfers.Start(deviceId, stream, userProperties, contentType, payload);
        }

        var (message, encoding) = _mapper.Map(deviceId, stream, userProperties, contentType, payload);
        return ingest.IngestAsync(message, encoding, cancellationToken);
    }

    /// <summary>
    /// A device's message as the broker is about to process its publish: stores it before the broker acknowledges it
    /// (QoS 0 and 2, and publishes that used a topic alias), unless its ingestion started when the packet arrived.
    /// Resends are stored once.
    /// </summary>
    public async Task InterceptPublishAsync(InterceptingPublishEventArgs e, string deviceId, string? stream)
    {
        e.ProcessPublish = false;
        if (e.SessionItems.Contains(BrokerSession.IngestStarted))
        {
            // Taken for ingestion when the packet arrived; its PUBACK waits for the commit (see HoldAckAsync).
            e.SessionItems.Remove(BrokerSession.IngestStarted);
            return;
        }

        var message = e.ApplicationMessage;
        IngestResult result;
        string? reason;
        try
        {
            // Forced off the registry's writer thread: the broker goes on to read this client's next packets after this returns.
            (result, reason) = await Start(deviceId, stream, message.UserProperties, message.ContentType, message.Payload, e.CancellationToken).ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        }
        catch (Exception ex) when (DiskFull.Is(ex))
        {
            RefuseForFullDisk(ex, out var code, out var text);
            e.Response.ReasonCode = code;
            e.Response.ReasonString = text;
            return;
        }

        diskFull.Succeeded();
        if (IngestAcks.IsRefusal(result))
        {
            e.Response.ReasonCode = IngestAcks.PubAck(result);
            e.Response.ReasonString = reason;
        }
    }

    /// <summary>
    /// QoS 1 messages and chunks a device publishes on its own topics start their ingestion the moment they arrive, and
    /// the broker goes on reading the next packet. Their PUBACKs still wait for the commit, in <see cref="HoldAckAsync"/>.
    /// </summary>
    public Task InterceptInboundPacket(InterceptingPacketEventArgs e)
    {
        if (e.Packet is not MqttPublishPacket { QualityOfServiceLevel: MqttQualityOfServiceLevel.AtLeastOnce } publish
            || string.IsNullOrEmpty(publish.Topic)
            || e.SessionItems[BrokerSession.DeviceId] is not string deviceId
            || !IsOwnIngest(publish.Topic, deviceId, out var stream))
        {
            return Task.CompletedTask;
        }

        var pending = (ConcurrentDictionary<ushort, Task<(IngestResult, string?)>>)e.SessionItems[BrokerSession.PendingAcks]!;
        pending[publish.PacketIdentifier] = Start(deviceId, stream, publish.UserProperties, publish.ContentType, publish.Payload, CancellationToken.None);
        e.SessionItems[BrokerSession.IngestStarted] = true;
        return Task.CompletedTask;
    }

    /// <summary>Holds a PUBACK until the message it acknowledges is stored; a message that could not be stored is refused.</summary>
    public async Task HoldAckAsync(MqttPubAckPacket ack, System.Collections.IDictionary sessionItems)
    {
        if (sessionItems[BrokerSession.PendingAcks] is not ConcurrentDictionary<ushort, Task<(IngestResult, string?)>> pending
            || !pending.TryRemove(ack.PacketIdentifier, out var ingestion))
        {
            return;
        }

        try
        {
            var (result, reason) = await ingestion.ConfigureAwait(false);
            diskFull.Succeeded();
            if (IngestAcks.IsRefusal(result))
            {
                ack.ReasonCode = IngestAcks.PubAck(result);
                ack.ReasonString = reason;
            }
        }
        catch (Exception ex) when (DiskFull.Is(ex))
        {
            RefuseForFullDisk(ex, out var code, out var text);
            ack.ReasonCode = code;
            ack.ReasonString = text;
        }
#pragma warning disable CA1031 // a message that could not be stored must not be acknowledged as stored
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.BrokerHandlerFailed(logger, ex);
            ack.ReasonCode = MqttPubAckReasonCode.UnspecifiedError;
            ack.ReasonString = "the message could not be stored; send it again";
        }
    }

    /// <summary>
    /// The refusal of a message the registry has no room for: 0x80 (unspecified error, which a device retries later, unlike
    /// 0x97 "quota exceeded" that SPEC §2.4 counts as permanent) with a reason saying when. Logged once per interval.
    /// </summary>
    private void RefuseForFullDisk(Exception exception, out MqttPubAckReasonCode code, out string reason)
    {
        diskFull.Refused("message", exception);
        code = MqttPubAckReasonCode.UnspecifiedError;
        reason = $"the server's disk is full; the message was not stored, send it again in {diskFull.RetryAfterSeconds} s";
    }
}
