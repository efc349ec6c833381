using System.Net;
using Enroll.Protocol;
using Enroll.Server.Diagnostics;
using Enroll.Server.Handlers;
using Enroll.Server.Tokens;
using Enroll.Shared.Files;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace Enroll.Server.Broker;

/// <summary>
/// The embedded MQTTnet broker: its listeners, and the broker's events wired to one class per concern —
/// <see cref="ConnectionAuthenticator"/> at CONNECT, <see cref="AccessPolicy"/> on every publish and subscription,
/// <see cref="RequestIntake"/> for requests (taken straight off the wire, never routed to other clients),
/// <see cref="IngestInterceptor"/> for device messages, <see cref="AnswerDelivery"/> for answers and
/// <see cref="KeyPublisher"/> for the retained key set. It also ends a revoked device's session (<see cref="IDeviceSessions"/>).
/// </summary>
internal sealed partial class EmbeddedBroker : IHostedService, IResponsePublisher, IDeviceSessions, IAsyncDisposable
{
    private readonly EnrollServerOptions _options;
    private readonly DeviceTokenValidator _tokens;
    private readonly RequestIntake _intake;
    private readonly IngestInterceptor _ingest;
    private readonly KeyPublisher _keyPublisher;
    private readonly PublishedKeys _keys;
    private readonly ServerMetrics _metrics;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<EmbeddedBroker> _logger;
    private readonly ServerTls _tls;
    private readonly Refusals.RefusalLog _refusals;
    private MqttServer? _server;
    private AnswerDelivery? _answers;

    public EmbeddedBroker(
        IOptions<EnrollServerOptions> options,
        DeviceTokenValidator tokens,
        RequestIntake intake,
        Ingest.MessageIngest ingest,
        Files.TransferIngest transfers,
        TimeOrderedId ids,
        PublishedKeys keys,
        ServerMetrics metrics,
        TimeProvider timeProvider,
        ServerTls tls,
        Registry.RegistryDiskFull diskFull,
        ILogger<EmbeddedBroker> logger,
        Refusals.RefusalLog refusals)
    {
        _refusals = refusals;
        _tls = tls;
        _options = options.Value;
        _tokens = tokens;
        _intake = intake;
        _ingest = new IngestInterceptor(ingest, transfers, ids, timeProvider, diskFull, logger);
        _keys = keys;
        _keyPublisher = new KeyPublisher(keys, this, logger);
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

    /// <summary>True once the broker has started and until it stops (for <c>/readyz</c>).</summary>
    public bool IsStarted => _server?.IsStarted == true;

    internal MqttServer Server => _server ?? throw new InvalidOperationException("The broker has not started.");

    /// <summary>The embedded broker ends sessions itself.</summary>
    public bool CanDisconnect => true;

    /// <summary>A session's packet writer buffer at the start (MQTTnet's default is 4 KiB).</summary>
    internal const int SessionWriterBufferBytes = 1024;

    /// <summary>What a session's writer buffer is brought back to after a larger packet (MQTTnet's default is 64 KiB).</summary>
    internal const int SessionWriterBufferMaxBytes = 4096;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // The stock endpoints stay off: the guarded listeners below serve plain TCP and TLS with bounded packets.
        var serverOptions = new MqttServerOptionsBuilder()
            .WithDefaultCommunicationTimeout(_options.ConnectTimeout)
            .Build();
        // Every session keeps its packet writer's buffer while it lives: most of an idle device's cost. Devices send and
        // take small packets (the key set, an answer, a twin patch); a larger one grows the buffer for its own write,
        // and the writer gives back what is above the ceiling afterwards.
        serverOptions.WriterBufferSize = SessionWriterBufferBytes;
        serverOptions.WriterBufferSizeMax = SessionWriterBufferMaxBytes;
        var listeners = new List<Transport.BrokerListener>();
        if (Port is { } plain)
        {
            listeners.Add(new Transport.BrokerListener(Address, plain, null));
        }

        if (TlsPort is { } secure)
        {
            listeners.Add(new Transport.BrokerListener(Address, secure, _tls.CertificateContext));
        }

        var descriptors = DescriptorLimit.Read();
        var maxConnections = _options.MaxConnections ?? DescriptorLimit.ConnectionCap(descriptors, DescriptorLimit.InUse());
        // Real time, not the injected clock: these limits are about real sockets, and a test that moves its clock a day
        // ahead must not see every connection as silent for a day.
        var adapter = new Transport.GuardedServerAdapter(listeners, _tls.ClientCa, _options.MaxPacketBytes, _options.ConnectTimeout, maxConnections, TimeProvider.System, _metrics, _logger, _refusals);
        var server = new MqttServerFactory().CreateMqttServer(serverOptions, [adapter]);
        var authenticator = new ConnectionAuthenticator(_options, _tokens, _metrics, _timeProvider, _logger, server, adapter, _refusals);
        _answers = new AnswerDelivery(server);
        server.ValidatingConnectionAsync += authenticator.ValidateAsync;
        server.InterceptingPublishAsync += e => Guard(() => InterceptPublishAsync(e));
        server.InterceptingSubscriptionAsync += e => Guard(() => InterceptSubscription(e));
        server.InterceptingUnsubscriptionAsync += e =>
        {
            AnswerDelivery.Unsubscribed(e);
            return Task.CompletedTask;
        };
        server.InterceptingInboundPacketAsync += e => Guard(() => _ingest.InterceptInboundPacket(e));
        server.InterceptingOutboundPacketAsync += e => e.Packet switch
        {
            MqttConnAckPacket connAck => Completed(() => authenticator.CompleteConnAck(connAck, e.SessionItems)),
            MqttPubAckPacket ack => _ingest.HoldAckAsync(ack, e.SessionItems),
            _ => Task.CompletedTask,
        };
        await server.StartAsync().ConfigureAwait(false);
        _server = server;
        Log.BrokerStarted(_logger, string.Join(", ", new[] { Endpoint, TlsEndpoint }.OfType<Uri>()));
        Log.BrokerLimits(_logger, maxConnections, descriptors?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown", (int)_options.MaxKeepAlive.TotalSeconds);

        await _keyPublisher.PublishAsync().ConfigureAwait(false);
        _keys.Changed += () => _ = _keyPublisher.PublishAsync();
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
        var message = ServerMessage.Create(topic, payload, correlationData, retain, contentType);
        if (!retain && _answers is { } answers && await answers.TryDeliverAsync(message).ConfigureAwait(false))
        {
            return;
        }

        await Server.InjectApplicationMessage(
            new InjectedMqttApplicationMessage(message) { SenderClientId = BrokerSession.ServerClientId },
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Ends the session of <paramref name="deviceId"/> (connected as <paramref name="clientId"/>) with reason "not authorized".</summary>
    public async Task<DisconnectResult> DisconnectAsync(string deviceId, string clientId, CancellationToken cancellationToken = default)
    {
        try
        {
            var session = await Server.GetSessionAsync(clientId).ConfigureAwait(false);
            if (session.Items[BrokerSession.DeviceId] as string != deviceId)
            {
                return DisconnectResult.NotConnected;
            }

            await Server.DisconnectClientAsync(clientId, new MqttServerClientDisconnectOptions
            {
                ReasonCode = MqttDisconnectReasonCode.NotAuthorized,
                ReasonString = "the device was revoked",
            }).ConfigureAwait(false);
            Log.DeviceDisconnected(_logger, deviceId, "revoked");
            return DisconnectResult.Disconnected;
        }
        catch (InvalidOperationException)
        {
            // Not connected (or already gone).
            return DisconnectResult.NotConnected;
        }
    }

    /// <summary>
    /// True when <paramref name="deviceId"/> has a session here as <paramref name="clientId"/> (connected, or a persistent
    /// one that queues QoS 1 messages): a message published to it now reaches the device.
    /// </summary>
    internal async Task<bool> HasSessionAsync(string deviceId, string clientId)
    {
        try
        {
            var session = await Server.GetSessionAsync(clientId).ConfigureAwait(false);
            return session.Items[BrokerSession.DeviceId] as string == deviceId;
        }
        catch (InvalidOperationException)
        {
            return false;
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
            _refusals.Record(Refusals.RefusalLog.AccessDenied, "publish " + message.Topic, e.ClientId);
            Log.AccessDenied(_logger, "publish", e.ClientId, message.Topic, deviceId is null ? "anonymous client" : $"device {deviceId}");
            return;
        }

        if (IngestInterceptor.IsOwnIngest(message.Topic, deviceId, out var stream))
        {
            await _ingest.InterceptPublishAsync(e, deviceId!, stream).ConfigureAwait(false);
            return;
        }

        if (RequestIntake.IsRequest(message.Topic))
        {
            // Requests are for the server alone; never route them to other subscribers.
            e.ProcessPublish = false;
            var sender = new RequestSender(e.ClientId, deviceId, e.SessionItems[BrokerSession.RemoteAddress] as string, e.SessionItems[BrokerSession.Certificate] as CertificateIdentity);
            await _intake.TakeAsync(message, sender, this).ConfigureAwait(false);
        }
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
            _refusals.Record(Refusals.RefusalLog.AccessDenied, "subscribe " + filter, e.ClientId);
            Log.AccessDenied(_logger, "subscribe", e.ClientId, filter, deviceId is null ? "anonymous client" : $"device {deviceId}");
            return Task.CompletedTask;
        }

        AnswerDelivery.Subscribed(e.SessionItems, filter, e.TopicFilter.QualityOfServiceLevel);
        return Task.CompletedTask;
    }

    private static Task Completed(Action action)
    {
        action();
        return Task.CompletedTask;
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
