using System.Buffers;
using System.Text;
using System.Threading.Channels;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Enroll.Testing;

/// <summary>
/// A plain MQTT client for tests that speak the wire protocol directly (as firmware in any language would): publish raw
/// payloads, subscribe, and wait for messages with a timeout.
/// </summary>
public sealed class RawMqttClient : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly Channel<MqttApplicationMessage> _received = Channel.CreateUnbounded<MqttApplicationMessage>();

    private RawMqttClient(IMqttClient client)
    {
        _client = client;
        _client.ApplicationMessageReceivedAsync += e =>
        {
            _received.Writer.TryWrite(e.ApplicationMessage);
            return Task.CompletedTask;
        };
    }

    public IMqttClient Client => _client;

    public static async Task<RawMqttClient> ConnectAsync(Uri broker, string clientId, string? username = null, string? password = null, MqttProtocolVersion version = MqttProtocolVersion.V500, System.Net.IPAddress? localAddress = null)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        // WithEndPoint resets the TCP options, so it goes first.
        var builder = new MqttClientOptionsBuilder()
            .WithEndPoint(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(broker.Host), broker.Port))
            .WithTcpServer(o =>
            {
                if (localAddress is not null)
                {
                    // Another loopback address (127.0.0.2, ...) makes this client a different source to the server.
                    o.LocalEndpoint = new System.Net.IPEndPoint(localAddress, 0);
                }
            })
            .WithClientId(clientId).WithProtocolVersion(version).WithTimeout(TimeSpan.FromSeconds(10));
        if (username is not null)
        {
            builder.WithCredentials(username, password);
        }

        var result = await client.ConnectAsync(builder.Build());
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            client.Dispose();
            throw new MqttConnectionRefusedException(result.ResultCode);
        }

        return new RawMqttClient(client);
    }

    /// <summary>Connects and returns the CONNACK result code instead of throwing.</summary>
    public static async Task<MqttClientConnectResultCode> TryConnectAsync(Uri broker, string clientId, string? username, string? password, MqttProtocolVersion version = MqttProtocolVersion.V500)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var builder = new MqttClientOptionsBuilder().WithTcpServer(broker.Host, broker.Port).WithClientId(clientId).WithProtocolVersion(version).WithTimeout(TimeSpan.FromSeconds(10));
        if (username is not null)
        {
            builder.WithCredentials(username, password);
        }

        try
        {
            var result = await client.ConnectAsync(builder.Build());
            if (result.ResultCode == MqttClientConnectResultCode.Success)
            {
                await client.DisconnectAsync();
            }

            return result.ResultCode;
        }
        catch (MQTTnet.Adapter.MqttConnectingFailedException ex) when (ex.InnerException is not null)
        {
            throw;
        }
    }

    public async Task<MqttClientSubscribeResultCode> SubscribeAsync(string filter, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var result = await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, qos).Build());
        return result.Items.Single().ResultCode;
    }

    public Task<MqttClientPublishResult> PublishAsync(string topic, string payload, string? responseTopic = null, byte[]? correlationData = null, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce) =>
        PublishAsync(topic, Encoding.UTF8.GetBytes(payload), responseTopic, correlationData, qos);

    public async Task<MqttClientPublishResult> PublishAsync(string topic, byte[] payload, string? responseTopic = null, byte[]? correlationData = null, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var builder = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(qos);
        if (responseTopic is not null)
        {
            builder.WithResponseTopic(responseTopic);
        }

        if (correlationData is not null)
        {
            builder.WithCorrelationData(correlationData);
        }

        return await _client.PublishAsync(builder.Build());
    }

    /// <summary>Waits for the next message; throws <see cref="TimeoutException"/> after <paramref name="timeout"/>.</summary>
    public async Task<MqttApplicationMessage> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try
        {
            return await _received.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no message within {timeout ?? TimeSpan.FromSeconds(10)}");
        }
    }

    /// <summary>True when a message arrives within <paramref name="window"/> (for asserting that nothing is delivered).</summary>
    public async Task<bool> ReceivesWithinAsync(TimeSpan window)
    {
        using var cts = new CancellationTokenSource(window);
        try
        {
            await _received.Reader.WaitToReadAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Collects every message that arrives within <paramref name="window"/>.</summary>
    public async Task<IReadOnlyList<MqttApplicationMessage>> CollectAsync(TimeSpan window)
    {
        var messages = new List<MqttApplicationMessage>();
        using var cts = new CancellationTokenSource(window);
        try
        {
            while (true)
            {
                messages.Add(await _received.Reader.ReadAsync(cts.Token));
            }
        }
        catch (OperationCanceledException)
        {
            return messages;
        }
    }

    public static string Text(MqttApplicationMessage message) => Encoding.UTF8.GetString(message.Payload.ToArray());

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            try
            {
                await _client.DisconnectAsync();
            }
            catch (Exception)
            {
            }
        }

        _client.Dispose();
    }
}

/// <summary>The broker refused a test client's connection.</summary>
public sealed class MqttConnectionRefusedException(MqttClientConnectResultCode code) : Exception($"connection refused: {code}")
{
    public MqttClientConnectResultCode Code { get; } = code;
}
