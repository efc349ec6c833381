using Enroll.Protocol.Topics;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Server.Broker;

/// <summary>
/// Serves requests through an external broker: the server connects with its own credential, subscribes to the request
/// topics (as a shared subscription, <c>$share/enroll/...</c>, when the broker offers them, so several servers split the
/// load), answers on the response topics and keeps its key set retained. Device authentication and topic access control
/// are the broker's job here (docs/operations.md); the handlers still check every credential in the payload.
/// </summary>
internal sealed partial class ExternalBrokerTransport : BackgroundService, IResponsePublisher, IDeviceSessions
{
    /// <summary>The shared-subscription group of Enroll servers.</summary>
    public const string ShareGroup = "enroll";

    private readonly EnrollServerOptions _options;
    private readonly RequestIntake _intake;
    private readonly PublishedKeys _keys;
    private readonly KeyPublisher _keyPublisher;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<ExternalBrokerTransport> _logger;
    private readonly IMqttClient _client;
    private readonly TaskCompletionSource _firstConnect = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ExternalBrokerTransport(IOptions<EnrollServerOptions> options, RequestIntake intake, PublishedKeys keys, TimeProvider timeProvider, ILogger<ExternalBrokerTransport> logger)
    {
        _options = options.Value;
        _intake = intake;
        _keys = keys;
        _keyPublisher = new KeyPublisher(keys, this, logger);
        _timeProvider = timeProvider;
        _logger = logger;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
        Endpoint = _options.ExternalBroker ?? throw new InvalidOperationException("no external broker configured");
    }

    public Uri Endpoint { get; }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await base.StartAsync(cancellationToken).ConfigureAwait(false);

        // Start-up waits for the first connection, so a wrong address or password fails `enroll server` at once.
        await _firstConnect.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        _keys.Changed += () => _ = PublishKeysAsync();
        while (!stoppingToken.IsCancellationRequested)
        {
            if (!_client.IsConnected)
            {
                try
                {
                    await ConnectAsync(stoppingToken).ConfigureAwait(false);
                    delay = TimeSpan.FromSeconds(1);
                    _firstConnect.TrySetResult();
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or System.Net.Sockets.SocketException)
                {
                    if (!_firstConnect.Task.IsCompleted && ex is InvalidOperationException)
                    {
                        _firstConnect.TrySetException(ex);
                        return;
                    }

                    LogConnectFailed(_logger, Endpoint.ToString(), ex.Message, delay);
                }
            }

            try
            {
                await Task.Delay(delay, _timeProvider, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
        }
    }

    private async Task ConnectAsync(CancellationToken cancellationToken)
    {
        var port = Endpoint.IsDefaultPort || Endpoint.Port <= 0 ? 1883 : Endpoint.Port;
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(Endpoint.Host, port)
            .WithClientId($"{BrokerSession.ServerClientId}-{Environment.MachineName}-{Environment.ProcessId}")
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(true)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
            .WithCredentials(_options.BrokerUsername, _options.BrokerPassword);
        if (Endpoint.Scheme is "mqtts" or "ssl")
        {
            builder.WithTlsOptions(tls => tls.UseTls().WithTargetHost(Endpoint.Host));
        }

        var result = await _client.ConnectAsync(builder.Build(), cancellationToken).ConfigureAwait(false);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"the broker at {Endpoint} refused the server's connection: {result.ResultCode} {result.ReasonString}");
        }

        var shared = result.SharedSubscriptionAvailable;
        var subscribe = new MqttClientSubscribeOptionsBuilder();
        foreach (var topic in EnrollTopics.RequestTopics)
        {
            subscribe.WithTopicFilter(shared ? $"$share/{ShareGroup}/{topic}" : topic, MqttQualityOfServiceLevel.AtLeastOnce);
        }

        var granted = await _client.SubscribeAsync(subscribe.Build(), cancellationToken).ConfigureAwait(false);
        foreach (var item in granted.Items)
        {
            if ((int)item.ResultCode > 2)
            {
                throw new InvalidOperationException($"the broker at {Endpoint} refused the server's subscription to {item.TopicFilter.Topic}: {item.ResultCode}; grant user '{_options.BrokerUsername}' access to enroll/v1/#");
            }
        }

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
        var result = await _client.PublishAsync(message, cancellationToken).ConfigureAwait(false);
        if (!result.IsSuccess)
        {
            LogPublishRefused(_logger, topic, result.ReasonCode.ToString());
        }
    }

    private Task PublishKeysAsync() => _client.IsConnected ? _keyPublisher.PublishAsync() : Task.CompletedTask;

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync(new MqttClientDisconnectOptions(), cancellationToken).ConfigureAwait(false);
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    [LoggerMessage(40, LogLevel.Information, "Serving requests through the external broker {Broker} (shared subscriptions: {Shared})")]
    private static partial void LogConnected(ILogger logger, string broker, bool shared);

    [LoggerMessage(41, LogLevel.Warning, "Cannot reach the external broker {Broker} ({Reason}); trying again in {Delay}")]
    private static partial void LogConnectFailed(ILogger logger, string broker, string reason, TimeSpan delay);

    [LoggerMessage(42, LogLevel.Warning, "The external broker refused the server's message on {Topic}: {Reason}")]
    private static partial void LogPublishRefused(ILogger logger, string topic, string reason);
}
