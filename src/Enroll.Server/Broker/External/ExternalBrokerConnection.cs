using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Server.Broker.External;

/// <summary>
/// One MQTT connection of the server to an external broker, under its own client ID and credential: start-up waits for
/// the first connection (a wrong address or password fails `enroll server` at once), later disconnections are retried
/// with a backoff doubling up to 30 s, and every (re)connection subscribes again in <see cref="OnConnectedAsync"/>.
/// With a session expiry the session is persistent (clean start false): the broker keeps the subscriptions and queues
/// QoS 1 messages for the client while it is away; without one it is clean, and a dead client is given nothing.
/// </summary>
internal abstract partial class ExternalBrokerConnection : BackgroundService
{
    /// <summary>The shared-subscription group of Enroll servers.</summary>
    public const string ShareGroup = "enroll";

    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private readonly TimeSpan? _sessionExpiry;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource _firstConnect = new(TaskCreationOptions.RunContinuationsAsynchronously);

    protected ExternalBrokerConnection(EnrollServerOptions options, string clientId, TimeSpan? sessionExpiry, TimeProvider timeProvider, ILogger logger)
    {
        Options = options;
        ClientId = clientId;
        _sessionExpiry = sessionExpiry;
        TimeProvider = timeProvider;
        _logger = logger;
        Client = new MqttClientFactory().CreateMqttClient();
        Endpoint = options.ExternalBroker ?? throw new InvalidOperationException("no external broker configured");
    }

    public Uri Endpoint { get; }

    /// <summary>This connection's MQTT client ID.</summary>
    public string ClientId { get; }

    protected EnrollServerOptions Options { get; }

    /// <summary>True while the connection to the broker is up (for <c>/readyz</c>).</summary>
    public bool IsConnected => Client.IsConnected;

    protected TimeProvider TimeProvider { get; }

    protected IMqttClient Client { get; }

    /// <summary>
    /// The stem of an instance's client IDs: <see cref="EnrollServerOptions.BrokerClientId"/>, or
    /// <c>$enroll-server-{machine name}</c>, stable across restarts so a restarted instance resumes its own session.
    /// </summary>
    public static string ClientIdStem(EnrollServerOptions options) =>
        options.BrokerClientId ?? $"{BrokerSession.ServerClientId}-{Environment.MachineName}";

    /// <summary>The filter for <paramref name="topic"/> in the group of Enroll servers when the broker offers shared subscriptions.</summary>
    protected static string Shared(string topic, bool shared) => shared ? $"$share/{ShareGroup}/{topic}" : topic;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
        await _firstConnect.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        while (!stoppingToken.IsCancellationRequested)
        {
            if (Client.IsConnected)
            {
                // Connected: look again in a second, so a dropped connection is resumed within about a second.
                delay = TimeSpan.FromSeconds(1);
            }
            else
            {
                try
                {
                    await ConnectAsync(stoppingToken).ConfigureAwait(false);
                    delay = TimeSpan.FromSeconds(1);
                    _firstConnect.TrySetResult();
                    continue;
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
                await Task.Delay(delay, TimeProvider, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            if (!Client.IsConnected)
            {
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    private async Task ConnectAsync(CancellationToken cancellationToken)
    {
        var port = Endpoint.IsDefaultPort || Endpoint.Port <= 0 ? 1883 : Endpoint.Port;
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(Endpoint.Host, port)
            .WithClientId(ClientId)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(_sessionExpiry is null)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
            .WithCredentials(Options.BrokerUsername, Options.BrokerPassword);
        if (_sessionExpiry is { } expiry)
        {
            builder.WithSessionExpiryInterval((uint)expiry.TotalSeconds);
        }

        if (Endpoint.Scheme is "mqtts" or "ssl")
        {
            builder.WithTlsOptions(tls => tls.UseTls().WithTargetHost(Endpoint.Host));
        }

        var result = await Client.ConnectAsync(builder.Build(), cancellationToken).ConfigureAwait(false);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"the broker at {Endpoint} refused the server's connection {ClientId}: {result.ResultCode} {result.ReasonString}");
        }

        await OnConnectedAsync(result, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Subscribes (again) after every successful connection.</summary>
    protected abstract Task OnConnectedAsync(MqttClientConnectResult result, CancellationToken cancellationToken);

    /// <summary>Subscribes to <paramref name="filters"/> at QoS 1; a refusal is an error naming the grant the server's user needs.</summary>
    protected async Task SubscribeAsync(IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var subscribe = new MqttClientSubscribeOptionsBuilder();
        foreach (var filter in filters)
        {
            subscribe.WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce);
        }

        var granted = await Client.SubscribeAsync(subscribe.Build(), cancellationToken).ConfigureAwait(false);
        foreach (var item in granted.Items)
        {
            if ((int)item.ResultCode > 2)
            {
                throw new InvalidOperationException($"the broker at {Endpoint} refused the server's subscription to {item.TopicFilter.Topic}: {item.ResultCode}; grant user '{Options.BrokerUsername}' access to enroll/v1/#");
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        await BeforeDisconnectAsync(cancellationToken).ConfigureAwait(false);
        if (Client.IsConnected)
        {
            // A persistent session outlives the connection: the DISCONNECT repeats its expiry (a 0 there would end it).
            var disconnect = new MqttClientDisconnectOptions();
            if (_sessionExpiry is { } expiry)
            {
                disconnect.SessionExpiryInterval = (uint)expiry.TotalSeconds;
            }

            await Client.DisconnectAsync(disconnect, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Runs when the server stops, while the connection is still open.</summary>
    protected virtual Task BeforeDisconnectAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Dispose()
    {
        Client.Dispose();
        base.Dispose();
        GC.SuppressFinalize(this);
    }

    [LoggerMessage(41, LogLevel.Warning, "Cannot reach the external broker {Broker} ({Reason}); trying again in {Delay}")]
    private static partial void LogConnectFailed(ILogger logger, string broker, string reason, TimeSpan delay);
}
