using System.Buffers;
using System.Security.Cryptography.X509Certificates;
using Enroll.Device.Diagnostics;
using Enroll.Shared.Tls;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Enroll.Device.Connection;

/// <summary><see cref="IDeviceConnection"/> over an MQTTnet client.</summary>
internal sealed class MqttDeviceConnection : IDeviceConnection
{
    private readonly IMqttClient _client;
    private readonly EnrollDeviceOptions _options;
    private readonly BrokerAddress _broker;
    private readonly ILogger<MqttDeviceConnection> _logger;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private readonly X509Certificate2Collection? _trustedCa;
    private readonly X509Certificate2? _clientCertificate;
    private long _generation;

    public MqttDeviceConnection(IOptions<EnrollDeviceOptions> options, ILogger<MqttDeviceConnection> logger)
    {
        _options = options.Value;
        _broker = BrokerAddress.Parse(_options.Broker);
        _logger = logger;
        _trustedCa = _options.TlsCaFile is null ? null : CertificateFiles.LoadBundle(_options.TlsCaFile);
        _clientCertificate = _options.ClientCertificateFile is null ? null : CertificateFiles.LoadWithKey(_options.ClientCertificateFile, _options.ClientKeyFile!);
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
        _client.DisconnectedAsync += OnDisconnectedAsync;
    }

    public bool IsConnected => _client.IsConnected;

    public ConnectionCredentials? Credentials { get; private set; }

    public long Generation => Interlocked.Read(ref _generation);

    public long? MaximumPacketSize { get; private set; }

    public event Func<IncomingMessage, Task>? MessageReceived;

    public event Action<Exception?>? Disconnected;

    public event Action<ConnectionCredentials>? Connected;

    public async Task ConnectAsync(ConnectionCredentials credentials, CancellationToken cancellationToken)
    {
        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_client.IsConnected && Equals(Credentials, credentials))
            {
                return;
            }

            if (_client.IsConnected)
            {
                await _client.DisconnectAsync(new MqttClientDisconnectOptions(), cancellationToken).ConfigureAwait(false);
            }

            var builder = new MqttClientOptionsBuilder()
                .WithTcpServer(_broker.Host, _broker.Port)
                .WithClientId(credentials.ClientId)
                .WithCleanStart(true)
                .WithKeepAlivePeriod(_options.KeepAlive)
                .WithTimeout(_options.AttemptTimeout)
                .WithProtocolVersion(_options.ProtocolVersion == MqttProtocol.V311 ? MqttProtocolVersion.V311 : MqttProtocolVersion.V500);
            if (credentials.Username is not null)
            {
                builder.WithCredentials(credentials.Username, credentials.Password);
            }

            var tlsCheck = _broker.UseTls ? new ServerCertificateCheck(_broker.Host, _trustedCa) : null;
            if (tlsCheck is not null)
            {
                builder.WithTlsOptions(tls =>
                {
                    tls.UseTls().WithTargetHost(_broker.Host).WithCertificateValidationHandler(tlsCheck.Validate);
                    if (_clientCertificate is not null)
                    {
                        tls.WithClientCertificates([_clientCertificate]);
                    }
                });
            }

            Credentials = credentials;
            MqttClientConnectResult result;
            try
            {
                result = await _client.ConnectAsync(builder.Build(), cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception ex) when (ex is not EnrollException and not OperationCanceledException)
            {
                if (tlsCheck?.Problem is { } problem)
                {
                    // A certificate problem never heals by retrying: say exactly what is wrong.
                    throw new EnrollConnectionException($"cannot connect to {_broker}: the server's TLS certificate was refused: {problem}", ex) { CertificateRefused = true };
                }

                throw new EnrollConnectionException($"cannot connect to {_broker}: {ex.Message}", ex);
            }

            if (result.ResultCode != MqttClientConnectResultCode.Success)
            {
                var refused = result.ResultCode is MqttClientConnectResultCode.BadUserNameOrPassword or MqttClientConnectResultCode.NotAuthorized
                    or MqttClientConnectResultCode.Banned or MqttClientConnectResultCode.ClientIdentifierNotValid;
                throw new EnrollConnectionException($"{_broker} refused the connection: {result.ResultCode}{(string.IsNullOrEmpty(result.ReasonString) ? string.Empty : " (" + result.ReasonString + ")")}")
                {
                    CredentialsRefused = refused,
                };
            }

            // MQTT 5 CONNACK Maximum Packet Size; 0 (absent) means the broker announced no limit.
            MaximumPacketSize = result.MaximumPacketSize > 0 ? result.MaximumPacketSize : null;
            Interlocked.Increment(ref _generation);
            Log.Connected(_logger, _broker.ToString(), credentials.ToString());
        }
        finally
        {
            _connectLock.Release();
        }

        Connected?.Invoke(credentials);
    }

    public async Task DisconnectAsync(CancellationToken cancellationToken)
    {
        if (!_client.IsConnected)
        {
            return;
        }

        try
        {
            await _client.DisconnectAsync(new MqttClientDisconnectOptions(), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.DisconnectFailed(_logger, ex.Message);
        }
    }

    public Task SubscribeAsync(string topicFilter, int qualityOfService, CancellationToken cancellationToken) =>
        SubscribeAsync([topicFilter], qualityOfService, cancellationToken);

    public async Task SubscribeAsync(IReadOnlyList<string> topicFilters, int qualityOfService, CancellationToken cancellationToken)
    {
        var builder = new MqttClientSubscribeOptionsBuilder();
        foreach (var topicFilter in topicFilters)
        {
            builder.WithTopicFilter(topicFilter, (MqttQualityOfServiceLevel)qualityOfService);
        }

        var result = await Guard(() => _client.SubscribeAsync(builder.Build(), cancellationToken), "subscribe", cancellationToken).ConfigureAwait(false);
        foreach (var item in result.Items)
        {
            if ((int)item.ResultCode > 2)
            {
                throw new EnrollConnectionException($"the broker refused the subscription to '{item.TopicFilter.Topic}': {item.ResultCode}");
            }
        }
    }

    public async Task UnsubscribeAsync(string topicFilter, CancellationToken cancellationToken)
    {
        if (!_client.IsConnected)
        {
            return;
        }

        var options = new MqttClientUnsubscribeOptionsBuilder().WithTopicFilter(topicFilter).Build();
        await Guard(() => _client.UnsubscribeAsync(options, cancellationToken), "unsubscribe", cancellationToken).ConfigureAwait(false);
    }

    public async Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
    {
        var builder = new MqttApplicationMessageBuilder()
            .WithTopic(message.Topic)
            .WithPayload(message.Payload.ToArray())
            .WithQualityOfServiceLevel((MqttQualityOfServiceLevel)message.QualityOfService);
        if (_options.ProtocolVersion == MqttProtocol.V500)
        {
            if (message.ResponseTopic is not null)
            {
                builder.WithResponseTopic(message.ResponseTopic);
            }

            if (message.CorrelationData is not null)
            {
                builder.WithCorrelationData(message.CorrelationData);
            }

            if (message.ExpirySeconds is { } expiry)
            {
                builder.WithMessageExpiryInterval(expiry);
            }

            if (message.ContentType is not null)
            {
                builder.WithContentType(message.ContentType);
            }

            if (message.UserProperties is not null)
            {
                foreach (var (name, value) in message.UserProperties)
                {
                    builder.WithUserProperty(name, System.Text.Encoding.UTF8.GetBytes(value).AsMemory());
                }
            }
        }

        var result = await Guard(() => _client.PublishAsync(builder.Build(), cancellationToken), "publish", cancellationToken).ConfigureAwait(false);
        if (!result.IsSuccess)
        {
            // The reason code travels as the inner exception, so the outbox publisher can tell a permanent refusal from a transient one.
            var refusal = new PublishRefusedException((int)result.ReasonCode, result.ReasonCode.ToString(), result.ReasonString);
            throw new EnrollConnectionException($"the broker refused the message on '{message.Topic}': {refusal.Message}", refusal);
        }
    }

    private async Task<T> Guard<T>(Func<Task<T>> action, string what, CancellationToken cancellationToken)
    {
        if (!_client.IsConnected)
        {
            throw new EnrollConnectionException($"cannot {what}: not connected to {_broker}");
        }

        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not EnrollException)
        {
            throw new EnrollConnectionException($"cannot {what}: {ex.Message}", ex);
        }
    }

    private async Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs args)
    {
        var handler = MessageReceived;
        if (handler is null)
        {
            return;
        }

        var message = args.ApplicationMessage;
        var incoming = new IncomingMessage(message.Topic, message.Payload.ToArray())
        {
            CorrelationData = message.CorrelationData,
            Retained = message.Retain,
        };
        try
        {
            await handler(incoming).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // a faulty handler must not stop the client's receive loop
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.MessageHandlerFailed(_logger, message.Topic, ex);
        }
    }

    private Task OnDisconnectedAsync(MqttClientDisconnectedEventArgs args)
    {
        if (args.ClientWasConnected)
        {
            if (args.Reason == MqttClientDisconnectReason.NormalDisconnection)
            {
                Log.DisconnectedCleanly(_logger, _broker.ToString());
            }
            else
            {
                Log.Disconnected(_logger, _broker.ToString(), args.Reason.ToString());
            }

            Disconnected?.Invoke(args.Exception);
        }

        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await DisconnectAsync(CancellationToken.None).ConfigureAwait(false);
        _client.Dispose();
        _connectLock.Dispose();
    }
}
