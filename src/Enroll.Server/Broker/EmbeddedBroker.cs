using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Json;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Handlers;
using Enroll.Server.Security;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace Enroll.Server.Broker;

/// <summary>
/// The embedded MQTTnet broker. It authenticates devices at connect (username = Device ID, password = access token),
/// takes requests straight off the wire into the <see cref="RequestQueue"/> (they are not routed to other clients), answers
/// by injecting messages, and keeps the server's signing keys published as a retained message.
/// </summary>
internal sealed partial class EmbeddedBroker : IHostedService, IResponsePublisher, IAsyncDisposable
{
    private readonly EnrollServerOptions _options;
    private readonly DeviceTokenValidator _tokens;
    private readonly RequestQueue _queue;
    private readonly FailureRateLimiter _limiter;
    private readonly Ingest.MessageIngest _ingest;
    private readonly TimeOrderedId _ids;
    private readonly PublishedKeys _keys;
    private readonly ServerMetrics _metrics;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<EmbeddedBroker> _logger;
    private readonly ServerTls _tls;
    private readonly Registry.RegistryDiskFull _diskFull;
    private readonly ConcurrentDictionary<string, byte> _deviceClientIds = new(StringComparer.Ordinal);
    private MqttServer? _server;
    private Transport.GuardedServerAdapter? _adapter;
    private readonly RepeatedCondition _refusals;

    public EmbeddedBroker(
        IOptions<EnrollServerOptions> options,
        DeviceTokenValidator tokens,
        RequestQueue queue,
        FailureRateLimiter limiter,
        Ingest.MessageIngest ingest,
        TimeOrderedId ids,
        PublishedKeys keys,
        ServerMetrics metrics,
        TimeProvider timeProvider,
        ServerTls tls,
        Registry.RegistryDiskFull diskFull,
        ILogger<EmbeddedBroker> logger)
    {
        _tls = tls;
        _diskFull = diskFull;
        _refusals = new RepeatedCondition(timeProvider, RepeatedCondition.DefaultInterval);
        _options = options.Value;
        _tokens = tokens;
        _queue = queue;
        _limiter = limiter;
        _ingest = ingest;
        _ids = ids;
        _keys = keys;
        _metrics = metrics;
        _timeProvider = timeProvider;
        _logger = logger;
        var address = BindAddress.Parse(_options.Bind);
        Address = address;
        Port = _options.NoPlaintext ? null : _options.MqttPort == 0 ? FreePort.Find(address) : _options.MqttPort;
        TlsPort = tls.Certificate is null ? null : _options.MqttTlsPort == 0 ? FreePort.Find(address) : _options.MqttTlsPort;
    }

    public IPAddress Address { get; }

    /// <summary>The plain MQTT port, unless the server serves TLS only.</summary>
    public int? Port { get; }

    /// <summary>The MQTT-over-TLS port, when TLS is configured.</summary>
    public int? TlsPort { get; }

    /// <summary>The plain address devices use, for example <c>mqtt://127.0.0.1:1883</c>; null when the server serves TLS only.</summary>
    public Uri? Endpoint => Port is { } port ? new($"mqtt://{BindAddress.ClientHost(Address)}:{port}") : null;

    /// <summary>The TLS address, for example <c>mqtts://127.0.0.1:8883</c>, when TLS is configured.</summary>
    public Uri? TlsEndpoint => TlsPort is { } port ? new($"mqtts://{BindAddress.ClientHost(Address)}:{port}") : null;

    internal MqttServer Server => _server ?? throw new InvalidOperationException("The broker has not started.");

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // The stock endpoints stay off: the guarded listeners below serve plain TCP and TLS with bounded packets.
        var serverOptions = new MqttServerOptionsBuilder()
            .WithDefaultCommunicationTimeout(_options.ConnectTimeout)
            .Build();
        var listeners = new List<Transport.BrokerListener>();
        if (Port is { } plain)
        {
            listeners.Add(new Transport.BrokerListener(Address, plain, null));
        }

        if (TlsPort is { } secure)
        {
            listeners.Add(new Transport.BrokerListener(Address, secure, _tls.CertificateContext));
        }

        var descriptors = Transport.DescriptorLimit.Read();
        var maxConnections = _options.MaxConnections ?? Transport.DescriptorLimit.ConnectionCap(descriptors, Transport.DescriptorLimit.InUse());
        // Real time, not the injected clock: these limits are about real sockets, and a test that moves its clock a day
        // ahead must not see every connection as silent for a day.
        var adapter = new Transport.GuardedServerAdapter(listeners, _tls.ClientCa, _options.MaxPacketBytes, _options.ConnectTimeout, maxConnections, TimeProvider.System, _metrics, _logger);
        _adapter = adapter;
        var server = new MqttServerFactory().CreateMqttServer(serverOptions, [adapter]);
        server.ValidatingConnectionAsync += ValidateConnectionSafelyAsync;
        server.InterceptingPublishAsync += e => Guard(() => InterceptPublishAsync(e));
        server.InterceptingSubscriptionAsync += e => Guard(() => InterceptSubscription(e));
        server.InterceptingUnsubscriptionAsync += e =>
        {
            if (e.ProcessUnsubscription && e.SessionItems[BrokerSession.Subscriptions] is ConcurrentDictionary<string, MqttQualityOfServiceLevel> filters)
            {
                filters.TryRemove(e.Topic, out _);
            }

            return Task.CompletedTask;
        };
        server.InterceptingInboundPacketAsync += e => Guard(() => InterceptInboundPacket(e));
        server.InterceptingOutboundPacketAsync += InterceptOutboundPacketAsync;
        await server.StartAsync().ConfigureAwait(false);
        _server = server;
        Log.BrokerStarted(_logger, string.Join(", ", new[] { Endpoint, TlsEndpoint }.OfType<Uri>()));
        Log.BrokerLimits(_logger, maxConnections, descriptors?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown", (int)_options.MaxKeepAlive.TotalSeconds);

        await PublishKeysAsync().ConfigureAwait(false);
        _keys.Changed += () => _ = PublishKeysAsync();
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is { } server)
        {
            await server.StopAsync().ConfigureAwait(false);
        }
    }

    public async Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json")
    {
        var message = new MqttApplicationMessage
        {
            Topic = topic,
            Payload = new ReadOnlySequence<byte>(payload),
            CorrelationData = correlationData,
            QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce,
            ContentType = contentType,
            Retain = retain,
        };
        if (!retain && await TryDeliverToClientAsync(message).ConfigureAwait(false))
        {
            return;
        }

        await Server.InjectApplicationMessage(
            new InjectedMqttApplicationMessage(message) { SenderClientId = BrokerSession.ServerClientId },
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Ends the broker session of <paramref name="deviceId"/> (connected as <paramref name="clientId"/>), if it has one,
    /// with reason "not authorized": for a device an operator just revoked.
    /// </summary>
    public async Task DisconnectDeviceAsync(string deviceId, string clientId)
    {
        try
        {
            var session = await Server.GetSessionAsync(clientId).ConfigureAwait(false);
            if (session.Items[BrokerSession.DeviceId] as string != deviceId)
            {
                return;
            }

            await Server.DisconnectClientAsync(clientId, new MqttServerClientDisconnectOptions
            {
                ReasonCode = MqttDisconnectReasonCode.NotAuthorized,
                ReasonString = "the device was revoked",
            }).ConfigureAwait(false);
            Log.DeviceDisconnected(_logger, deviceId, "revoked");
        }
        catch (InvalidOperationException)
        {
            // Not connected (or already gone).
        }
    }

    /// <summary>
    /// Delivers an answer on <c>enroll/v1/clients/{client ID}/responses</c> straight into that client's session, if it
    /// subscribed to a matching filter (with that subscription's QoS, at most 1), else not at all — what the broker's
    /// general dispatch would do, without checking every connected session's subscriptions for every answer (which
    /// makes a storm of thousands of devices quadratic). False for any other topic.
    /// </summary>
    private async Task<bool> TryDeliverToClientAsync(MqttApplicationMessage message)
    {
        if (!TryParseClientResponses(message.Topic, out var clientId))
        {
            return false;
        }

        MQTTnet.Server.MqttSessionStatus session;
        try
        {
            session = await Server.GetSessionAsync(clientId).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // No session: the client is gone, and nobody else may read its topics.
            return true;
        }

        if (session.Items[BrokerSession.Subscriptions] is not ConcurrentDictionary<string, MqttQualityOfServiceLevel> filters)
        {
            return true;
        }

        MqttQualityOfServiceLevel? granted = null;
        foreach (var (filter, qos) in filters)
        {
            if (MqttTopicFilterComparer.Compare(message.Topic, filter) == MqttTopicFilterCompareResult.IsMatch && (granted is null || qos > granted))
            {
                granted = qos;
            }
        }

        if (granted is { } level)
        {
            message.QualityOfServiceLevel = level < message.QualityOfServiceLevel ? level : message.QualityOfServiceLevel;
            session.TryEnqueueApplicationMessage(message, out _);
        }

        return true;
    }

    private static bool TryParseClientResponses(string topic, out string clientId)
    {
        const string Prefix = "enroll/v1/clients/";
        const string Suffix = "/responses";
        clientId = string.Empty;
        if (topic.Length <= Prefix.Length + Suffix.Length || !topic.StartsWith(Prefix, StringComparison.Ordinal) || !topic.EndsWith(Suffix, StringComparison.Ordinal))
        {
            return false;
        }

        clientId = topic[Prefix.Length..^Suffix.Length];
        return clientId.Length > 0 && !clientId.Contains('/', StringComparison.Ordinal);
    }

    private async Task PublishKeysAsync()
    {
        var keySet = _keys.KeySet;
        var payload = JsonSerializer.SerializeToUtf8Bytes(keySet, EnrollJsonContext.Default.ServerKeySet);
        await PublishAsync(EnrollTopics.ServerKeys, payload, null, retain: true, CancellationToken.None).ConfigureAwait(false);
        Log.KeysPublished(_logger, keySet.Keys.Count, EnrollTopics.ServerKeys);
    }

    private async Task ValidateConnectionSafelyAsync(ValidatingConnectionEventArgs e)
    {
        try
        {
            await ValidateConnectionAsync(e).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // a failure while checking credentials must refuse the client, never let it in
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.BrokerHandlerFailed(_logger, ex);
            Refuse(e, MqttConnectReasonCode.ServerUnavailable, "credentials could not be checked");
        }
    }

    private async Task ValidateConnectionAsync(ValidatingConnectionEventArgs e)
    {
        if (string.IsNullOrEmpty(e.ClientId))
        {
            // MQTT 5 lets the server assign an ID (MQTTnet refuses empty IDs under 3.1.1 regardless).
            e.AssignedClientIdentifier = "anon-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        }

        var clientId = string.IsNullOrEmpty(e.ClientId) ? e.AssignedClientIdentifier : e.ClientId;
        if (e.RemoteEndPoint is IPEndPoint remote)
        {
            e.SessionItems[BrokerSession.RemoteAddress] = remote.Address.ToString();
        }

        if (string.IsNullOrEmpty(e.UserName))
        {
            if (e.RawPassword is { Length: > 0 })
            {
                Refuse(e, MqttConnectReasonCode.BadUserNameOrPassword, "a password without a user name");
                return;
            }

            if (e.ClientCertificate is { } certificate)
            {
                // Checked against --client-ca during the handshake; it vouches for exactly one client ID, its common name.
                var commonName = certificate.GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.SimpleName, false);
                if (!string.Equals(commonName, clientId, StringComparison.Ordinal))
                {
                    Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, $"the client certificate is for '{commonName}', not client ID '{clientId}'");
                    return;
                }

                e.SessionItems[BrokerSession.Certificate] = new CertificateIdentity(commonName, CertificateOrg(certificate));
            }

            // Anonymous clients may only request and read their own client topics (enforced per topic), and may not
            // take over the client ID of a connected device.
            if (await IsDeviceConnectedAsync(clientId).ConfigureAwait(false))
            {
                Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, "client ID in use by a connected device");
                return;
            }

            _metrics.ConnectionAccepted("anonymous");
            LimitKeepAlive(e, isDevice: false);
            return;
        }

        if (e.UserName.StartsWith('$'))
        {
            Refuse(e, MqttConnectReasonCode.BadUserNameOrPassword, "reserved user name");
            return;
        }

        var check = await _tokens.ValidateAccessTokenAsync(e.Password, e.UserName, e.CancellationToken).ConfigureAwait(false);
        if (!check.IsValid)
        {
            // A genuine token of a device that may no longer connect is "not authorized"; anything else is bad credentials.
            Refuse(e, check.Device is null ? MqttConnectReasonCode.BadUserNameOrPassword : MqttConnectReasonCode.NotAuthorized, check.Failure!);
            return;
        }

        // A device connects with the client ID it registered with; that also lets it take over its own stale session.
        if (!string.Equals(check.Device!.ClientId, clientId, StringComparison.Ordinal))
        {
            Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, $"device {e.UserName} must connect with its own client ID");
            return;
        }

        e.SessionItems[BrokerSession.DeviceId] = e.UserName;
        e.SessionItems[BrokerSession.PendingAcks] = new ConcurrentDictionary<ushort, Task<(Ingest.IngestResult, string?)>>();
        _deviceClientIds.TryAdd(clientId, 0);
        _metrics.ConnectionAccepted("device");
        LimitKeepAlive(e, isDevice: true);
        Log.DeviceConnected(_logger, e.UserName, e.ClientId);
    }

    /// <summary>
    /// Grants a keep-alive of at most <see cref="EnrollServerOptions.MaxKeepAlive"/> (a client asking for 0 — none — or more
    /// gets the maximum, told in the CONNACK's Server Keep Alive under MQTT 5) and has the transport close the connection
    /// after 1.5 times that without a byte from the client.
    /// </summary>
    private void LimitKeepAlive(ValidatingConnectionEventArgs e, bool isDevice)
    {
        var max = (ushort)Math.Clamp(_options.MaxKeepAlive.TotalSeconds, 1, ushort.MaxValue);
        var granted = e.KeepAlivePeriod is { } asked && asked > 0 && asked <= max ? asked : max;
        e.SessionItems[BrokerSession.ServerKeepAlive] = granted;
        _adapter?.Connected(e.ChannelAdapter, TimeSpan.FromSeconds(granted * 1.5), isDevice);
    }

    /// <summary>The organisation a client certificate names (its O attribute) when that is a valid identifier.</summary>
    private string CertificateOrg(System.Security.Cryptography.X509Certificates.X509Certificate2 certificate)
    {
        foreach (var part in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (part.GetSingleElementType().Value == "2.5.4.10" && part.GetSingleElementValue() is { } org && EnrollIdentifiers.IsValid(org))
            {
                return org;
            }
        }

        return _options.ClientCertificateOrg;
    }

    private void Refuse(ValidatingConnectionEventArgs e, MqttConnectReasonCode code, string reason)
    {
        e.ReasonCode = code;
        e.ReasonString = reason;
        _metrics.ConnectionRefused(reason);
        // A client retrying bad credentials as fast as it can must not write a line per attempt: the latest refusal is
        // logged once per interval, with the number refused since the last line (every one is counted in the metrics).
        if (_refusals.Occurred(out var refused))
        {
            Log.ConnectionRefused(_logger, e.ClientId ?? string.Empty, e.UserName ?? string.Empty, e.RemoteEndPoint?.ToString() ?? "?", reason, refused);
        }
    }

    private async Task InterceptPublishAsync(InterceptingPublishEventArgs e)
    {
        if (e.ClientId == BrokerSession.ServerClientId)
        {
            return;
        }

        var message = e.ApplicationMessage;
        var deviceId = e.SessionItems[BrokerSession.DeviceId] as string;
        if (!AccessPolicy.CanPublish(message.Topic, e.ClientId, deviceId))
        {
            e.ProcessPublish = false;
            e.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
            e.Response.ReasonString = "not allowed to publish on this topic";
            _metrics.AccessDenied("publish");
            Log.AccessDenied(_logger, "publish", e.ClientId, message.Topic, deviceId is null ? "anonymous client" : $"device {deviceId}");
            return;
        }

        if (deviceId is not null && EnrollTopics.TryParseDeviceMessageTopic(message.Topic, out var sender, out var stream) && sender == deviceId)
        {
            e.ProcessPublish = false;
            if (e.SessionItems.Contains(BrokerSession.IngestStarted))
            {
                // Taken for ingestion when the packet arrived; its PUBACK waits for the commit (see InterceptOutboundPacketAsync).
                e.SessionItems.Remove(BrokerSession.IngestStarted);
                return;
            }

            await IngestAsync(e, sender, stream).ConfigureAwait(false);
            return;
        }

        if (EnrollTopics.IsRequestTopic(message.Topic))
        {
            // Requests are for the server alone; never route them to other subscribers.
            e.ProcessPublish = false;
            var source = e.SessionItems[BrokerSession.RemoteAddress] as string;
            if (_limiter.IsSourceLimited(source, out var retryAfter))
            {
                // A source that keeps failing is answered here, so its burst never queues ahead of other devices.
                _metrics.RequestRejected(message.Topic, ErrorCodes.RateLimited);
                if (message.ResponseTopic is { } limitedTopic && EnrollTopics.IsResponseTopicShape(limitedTopic))
                {
                    await PublishAsync(limitedTopic, RequestQueue.RateLimitedAnswer((int)Math.Ceiling(Math.Max(1, retryAfter.TotalSeconds))), message.CorrelationData, retain: false, CancellationToken.None).ConfigureAwait(false);
                }

                return;
            }

            var now = _timeProvider.GetUtcNow();
            var request = new IncomingRequest(message.Topic, message.Payload.ToArray())
            {
                ResponseTopic = message.ResponseTopic,
                CorrelationData = message.CorrelationData,
                SenderClientId = e.ClientId,
                SenderDeviceId = deviceId,
                SenderAddress = source,
                SenderCertificate = e.SessionItems[BrokerSession.Certificate] as CertificateIdentity,
                ReceivedAt = now,
                ExpiresAt = IncomingRequest.Expiry(now, message.MessageExpiryInterval),
            };
            if (!_queue.TryEnqueue(request))
            {
                _metrics.RequestRejected(message.Topic, "overloaded");
                if (message.ResponseTopic is { } topic && EnrollTopics.IsResponseTopicShape(topic))
                {
                    await PublishAsync(topic, RequestQueue.OverloadedAnswer, message.CorrelationData, retain: false, CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>
    /// Stores a device's message before the broker acknowledges it (QoS 0 and 2, and publishes that used a topic alias):
    /// the broker's answer waits for the group commit that holds the message. Resends are stored once.
    /// </summary>
    private async Task IngestAsync(InterceptingPublishEventArgs e, string deviceId, string stream)
    {
        var message = e.ApplicationMessage;
        var (ingested, encoding) = ToIngested(deviceId, stream, message.UserProperties, message.ContentType, message.Payload);
        Ingest.IngestResult result;
        string? reason;
        try
        {
            // Forced off the registry's writer thread: the broker goes on to read this client's next packets after this returns.
            (result, reason) = await _ingest.IngestAsync(ingested, encoding, e.CancellationToken).ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        }
        catch (Exception ex) when (Registry.DiskFull.Is(ex))
        {
            RefuseForFullDisk(ex, out var code, out var text);
            e.Response.ReasonCode = code;
            e.Response.ReasonString = text;
            return;
        }

        _diskFull.Succeeded();
        if (result == Ingest.IngestResult.Invalid)
        {
            e.Response.ReasonCode = MqttPubAckReasonCode.PayloadFormatInvalid;
            e.Response.ReasonString = reason;
        }
    }

    /// <summary>
    /// The refusal of a message the registry has no room for: 0x80 (unspecified error, which a device retries later, unlike
    /// 0x97 "quota exceeded" that SPEC §2.4 counts as permanent) with a reason saying when. Logged once per interval.
    /// </summary>
    private void RefuseForFullDisk(Exception exception, out MqttPubAckReasonCode code, out string reason)
    {
        _diskFull.Refused("message", exception);
        code = MqttPubAckReasonCode.UnspecifiedError;
        reason = $"the server's disk is full; the message was not stored, send it again in {_diskFull.RetryAfterSeconds} s";
    }

    /// <summary>
    /// QoS 1 messages a device publishes on its own messages topics start their ingestion the moment they arrive, and
    /// the broker goes on reading the next packet: messages in flight from one device then share group commits. Their
    /// PUBACKs still wait for the commit, in <see cref="InterceptOutboundPacketAsync"/>.
    /// </summary>
    private Task InterceptInboundPacket(InterceptingPacketEventArgs e)
    {
        if (e.Packet is not MqttPublishPacket { QualityOfServiceLevel: MqttQualityOfServiceLevel.AtLeastOnce } publish
            || string.IsNullOrEmpty(publish.Topic)
            || e.SessionItems[BrokerSession.DeviceId] is not string deviceId
            || !EnrollTopics.TryParseDeviceMessageTopic(publish.Topic, out var sender, out var stream)
            || sender != deviceId)
        {
            return Task.CompletedTask;
        }

        var (message, encoding) = ToIngested(deviceId, stream, publish.UserProperties, publish.ContentType, publish.Payload);
        var pending = (ConcurrentDictionary<ushort, Task<(Ingest.IngestResult, string?)>>)e.SessionItems[BrokerSession.PendingAcks]!;
        pending[publish.PacketIdentifier] = _ingest.IngestAsync(message, encoding, CancellationToken.None);
        e.SessionItems[BrokerSession.IngestStarted] = true;
        return Task.CompletedTask;
    }

    /// <summary>Holds a PUBACK until the message it acknowledges is stored; a message that could not be stored is refused.</summary>
    private async Task InterceptOutboundPacketAsync(InterceptingPacketEventArgs e)
    {
        if (e.Packet is MqttConnAckPacket connAck)
        {
            // MQTT 5 clients learn the listener's packet limit, so a device never sends a packet the guard would cut.
            connAck.MaximumPacketSize = (uint)_options.MaxPacketBytes;
            if (e.SessionItems[BrokerSession.ServerKeepAlive] is ushort granted)
            {
                connAck.ServerKeepAlive = granted;
            }

            return;
        }

        if (e.Packet is not MqttPubAckPacket ack
            || e.SessionItems[BrokerSession.PendingAcks] is not ConcurrentDictionary<ushort, Task<(Ingest.IngestResult, string?)>> pending
            || !pending.TryRemove(ack.PacketIdentifier, out var ingestion))
        {
            return;
        }

        try
        {
            var (result, reason) = await ingestion.ConfigureAwait(false);
            _diskFull.Succeeded();
            if (result == Ingest.IngestResult.Invalid)
            {
                ack.ReasonCode = MqttPubAckReasonCode.PayloadFormatInvalid;
                ack.ReasonString = reason;
            }
        }
        catch (Exception ex) when (Registry.DiskFull.Is(ex))
        {
            RefuseForFullDisk(ex, out var code, out var text);
            ack.ReasonCode = code;
            ack.ReasonString = text;
        }
#pragma warning disable CA1031 // a message that could not be stored must not be acknowledged as stored
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.BrokerHandlerFailed(_logger, ex);
            ack.ReasonCode = MqttPubAckReasonCode.UnspecifiedError;
            ack.ReasonString = "the message could not be stored; send it again";
        }
    }

    private (IngestedMessage Message, string? Encoding) ToIngested(string deviceId, string stream, List<MqttUserProperty>? userProperties, string? contentType, ReadOnlySequence<byte> payload)
    {
        string? messageId = null, createdAt = null, encoding = null;
        var properties = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in userProperties ?? [])
        {
            switch (property.Name)
            {
                case "message_id":
                    messageId = property.ReadValueAsString();
                    break;
                case "created_at":
                    createdAt = property.ReadValueAsString();
                    break;
                case "content_encoding":
                    encoding = property.ReadValueAsString();
                    break;
                default:
                    properties[property.Name] = property.ReadValueAsString();
                    break;
            }
        }

        var message = new IngestedMessage
        {
            DeviceId = deviceId,
            // MQTT 3.1.1 has no user properties: such messages get a server ID and cannot be de-duplicated.
            MessageId = messageId ?? "srv_" + _ids.Next(),
            Stream = stream,
            CreatedAt = DateTimeOffset.TryParse(createdAt, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var created) ? created : null,
            ReceivedAt = _timeProvider.GetUtcNow(),
            ContentType = contentType,
            Properties = properties,
            Payload = payload.ToArray(),
        };
        return (message, encoding);
    }

    private Task InterceptSubscription(InterceptingSubscriptionEventArgs e)
    {
        var deviceId = e.SessionItems[BrokerSession.DeviceId] as string;
        var filter = e.TopicFilter.Topic;
        if (!AccessPolicy.CanSubscribe(filter, e.ClientId, deviceId))
        {
            e.ProcessSubscription = false;
            e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
            e.ReasonString = "not allowed to subscribe to this filter";
            _metrics.AccessDenied("subscribe");
            Log.AccessDenied(_logger, "subscribe", e.ClientId, filter, deviceId is null ? "anonymous client" : $"device {deviceId}");
            return Task.CompletedTask;
        }

        // Remembered for TryDeliverToClientAsync.
        var filters = e.SessionItems[BrokerSession.Subscriptions] as ConcurrentDictionary<string, MqttQualityOfServiceLevel>;
        if (filters is null)
        {
            filters = new ConcurrentDictionary<string, MqttQualityOfServiceLevel>(StringComparer.Ordinal);
            e.SessionItems[BrokerSession.Subscriptions] = filters;
        }

        filters[filter] = e.TopicFilter.QualityOfServiceLevel;
        return Task.CompletedTask;
    }

    /// <summary>
    /// True when a device (an authenticated session) holds <paramref name="clientId"/>. The broker's session table is the
    /// authority — it holds a session from before the CONNACK until the client is gone — and the set of client IDs ever
    /// used by devices (one entry per device, never removed, so a takeover cannot race it) spares that lookup for the
    /// many anonymous clients that never were.
    /// </summary>
    private async Task<bool> IsDeviceConnectedAsync(string clientId)
    {
        if (!_deviceClientIds.ContainsKey(clientId))
        {
            return false;
        }

        try
        {
            var session = await Server.GetSessionAsync(clientId).ConfigureAwait(false);
            return session.Items[BrokerSession.DeviceId] is string;
        }
        catch (InvalidOperationException)
        {
            // No such session: the device is gone.
            return false;
        }
    }


    private async Task Guard(Func<Task> handler)
    {
        try
        {
            await handler().ConfigureAwait(false);
        }
#pragma warning disable CA1031 // an exception in a broker callback would drop the client; log it instead
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.BrokerHandlerFailed(_logger, ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is { } server)
        {
            await server.StopAsync().ConfigureAwait(false);
            server.Dispose();
            _server = null;
        }
    }
}
