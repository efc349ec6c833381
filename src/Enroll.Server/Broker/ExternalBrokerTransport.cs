using Enroll.Protocol.Topics;
using Enroll.Server.Broker.External;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;

namespace Enroll.Server.Broker;

/// <summary>
/// Serves requests through an external broker: the server connects as <c>{id}-requests</c> with its own credential and a
/// clean session, subscribes to the request topics as shared subscriptions (<c>$share/enroll/...</c>, when the broker
/// offers them, so several instances split the load; with a clean session a dead instance is given no new requests),
/// answers on the response topics and keeps its key set retained. Device messages come in on a connection of their own
/// (<see cref="ExternalIngest"/>). Device authentication and topic access control are the broker's job here
/// (docs/operations.md); the handlers still check every credential in the payload.
/// </summary>
internal sealed partial class ExternalBrokerTransport : ExternalBrokerConnection, IResponsePublisher, IDeviceSessions
{
    private readonly RequestIntake _intake;
    private readonly KeyPublisher _keyPublisher;
    private readonly ILogger<ExternalBrokerTransport> _logger;

    public ExternalBrokerTransport(IOptions<EnrollServerOptions> options, RequestIntake intake, PublishedKeys keys, TimeProvider timeProvider, ILogger<ExternalBrokerTransport> logger)
        : base(options.Value, ClientIdStem(options.Value) + "-requests", sessionExpiry: null, timeProvider, logger)
    {
        _intake = intake;
        _keyPublisher = new KeyPublisher(keys, this, logger);
        _logger = logger;
        Client.ApplicationMessageReceivedAsync += OnMessageAsync;
        keys.Changed += () => _ = PublishKeysAsync();
    }

    protected override async Task OnConnectedAsync(MqttClientConnectResult result, CancellationToken cancellationToken)
    {
        var shared = result.SharedSubscriptionAvailable;
        await SubscribeAsync(EnrollTopics.RequestFilters.Select(filter => Shared(filter, shared)), cancellationToken).ConfigureAwait(false);
        LogConnected(_logger, Endpoint.ToString(), shared);
        await PublishKeysAsync().ConfigureAwait(false);
    }

    /// <summary>Requests go through the same intake as on the embedded broker; the broker does not tell who sent them.</summary>
    private Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e) =>
        RequestIntake.IsRequest(e.ApplicationMessage.Topic)
            ? _intake.TakeAsync(e.ApplicationMessage, RequestSender.Unknown, this)
            : Task.CompletedTask;

    /// <summary>False: MQTT has no standard way for one client to end another's session.</summary>
    public bool CanDisconnect => false;

    /// <summary>
    /// Cannot end the device's session on the external broker (MQTT gives a client no means to): the device's tokens are
    /// refused by the request handlers from now on, and a broker that checks its access token refuses its next CONNECT.
    /// </summary>
    public Task<DisconnectResult> DisconnectAsync(string deviceId, string clientId, CancellationToken cancellationToken = default) =>
        Task.FromResult(DisconnectResult.NotSupported);

    public async Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json")
    {
        var message = ServerMessage.Create(topic, payload, correlationData, retain, contentType);
        var result = await Client.PublishAsync(message, cancellationToken).ConfigureAwait(false);
        if (!result.IsSuccess)
        {
            LogPublishRefused(_logger, topic, result.ReasonCode.ToString());
        }
    }

    private Task PublishKeysAsync() => Client.IsConnected ? _keyPublisher.PublishAsync() : Task.CompletedTask;

    [LoggerMessage(40, LogLevel.Information, "Serving requests through the external broker {Broker} (shared subscriptions: {Shared})")]
    private static partial void LogConnected(ILogger logger, string broker, bool shared);

    [LoggerMessage(42, LogLevel.Warning, "The external broker refused the server's message on {Topic}: {Reason}")]
    private static partial void LogPublishRefused(ILogger logger, string topic, string reason);
}
