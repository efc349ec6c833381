using System.Buffers;
using System.Diagnostics;
using System.Text;
using Enroll.Protocol.Topics;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Cli.Bench;

/// <summary>What one request/response load phase measured.</summary>
internal sealed record LoadResult(double Rate, double P50Milliseconds, double P99Milliseconds, long Completed, long Failed)
{
    public static LoadResult From(IEnumerable<List<double>> latencies, long failed, TimeSpan elapsed)
    {
        var all = latencies.SelectMany(l => l).Order().ToArray();
        return new LoadResult(all.Length / elapsed.TotalSeconds, Percentile(all, 0.50), Percentile(all, 0.99), all.Length, failed);
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
}

/// <summary>
/// One simulated device for request/response load: a plain MQTT client, anonymous, subscribed to its own
/// <c>enroll/v1/clients/{client ID}/#</c>, with one request outstanding at a time (as a device waits for its answer).
/// </summary>
internal sealed class LoadClient : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly MqttQualityOfServiceLevel _qos;
    private TaskCompletionSource<MqttApplicationMessage>? _pending;
    private byte[] _expected = [];
    private long _sequence;

    private LoadClient(IMqttClient client, string clientId, MqttQualityOfServiceLevel qos)
    {
        _client = client;
        ClientId = clientId;
        _qos = qos;
        _client.ApplicationMessageReceivedAsync += e =>
        {
            if (Responder is { } responder && e.ApplicationMessage.Topic == FloorTopic)
            {
                Respond(responder, e.ApplicationMessage);
                return Task.CompletedTask;
            }

            var pending = Volatile.Read(ref _pending);
            if (pending is not null && e.ApplicationMessage.CorrelationData.AsSpan().SequenceEqual(_expected))
            {
                pending.TrySetResult(e.ApplicationMessage);
            }

            return Task.CompletedTask;
        };
    }

    public string ClientId { get; }

    /// <summary>The client's own echo topic: the broker routes what it publishes there straight back to it.</summary>
    public string EchoTopic => EnrollTopics.ClientNamespace(ClientId) + "bench-echo";

    public string ResponseTopic => EnrollTopics.ClientResponses(ClientId);

    /// <summary>
    /// The client's own work-floor topic: a request published there comes back to this client, which hands it to
    /// <see cref="Responder"/> and publishes what that returns to the request's response topic, as a responder would.
    /// </summary>
    public string FloorTopic => EnrollTopics.ClientNamespace(ClientId) + "bench-floor";

    /// <summary>What answers requests that arrive on <see cref="FloorTopic"/> (none: they are ignored).</summary>
    public Func<ReadOnlyMemory<byte>, Task<byte[]>>? Responder { get; set; }

    public static async Task<LoadClient> ConnectAsync(Uri broker, string clientId, int qos, CancellationToken cancellationToken)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(broker.Host, broker.Port)
            .WithClientId(clientId)
            .WithCleanStart(true)
            .WithTimeout(TimeSpan.FromSeconds(30));
        if (broker.Scheme is "mqtts" or "ssl")
        {
            options.WithTlsOptions(tls => tls.UseTls().WithTargetHost(broker.Host));
        }

        await client.ConnectAsync(options.Build(), cancellationToken).ConfigureAwait(false);
        var load = new LoadClient(client, clientId, (MqttQualityOfServiceLevel)qos);
        var subscribed = await client.SubscribeAsync(
            new MqttClientSubscribeOptionsBuilder().WithTopicFilter(EnrollTopics.ClientNamespace(clientId) + "#", (MqttQualityOfServiceLevel)qos).Build(),
            cancellationToken).ConfigureAwait(false);
        if ((int)subscribed.Items.First().ResultCode > 2)
        {
            throw new InvalidOperationException($"the broker refused {clientId} its own response topics: {subscribed.Items.First().ResultCode}");
        }

        return load;
    }

    /// <summary>Publishes <paramref name="payload"/> to <paramref name="topic"/> and waits for the matching answer.</summary>
    public async Task<MqttApplicationMessage> RequestAsync(string topic, byte[] payload, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var correlation = BitConverter.GetBytes(Interlocked.Increment(ref _sequence));
        var pending = new TaskCompletionSource<MqttApplicationMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _expected = correlation;
        Volatile.Write(ref _pending, pending);
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(_qos)
            .WithResponseTopic(ResponseTopic)
            .WithCorrelationData(correlation)
            .Build();
        await _client.PublishAsync(message, cancellationToken).ConfigureAwait(false);
        return await pending.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
    }

    // Off the client's receive path, as a responder hands a request to its workers: the answer's own QoS 1 publish
    // must not wait on the loop that reads its acknowledgement.
    private void Respond(Func<ReadOnlyMemory<byte>, Task<byte[]>> responder, MqttApplicationMessage request)
    {
        var payload = request.Payload.ToArray();
        var correlation = request.CorrelationData;
        var responseTopic = request.ResponseTopic ?? ResponseTopic;
        _ = Task.Run(async () =>
        {
            try
            {
                var answer = await responder(payload).ConfigureAwait(false);
                await _client.PublishAsync(
                    new MqttApplicationMessageBuilder()
                        .WithTopic(responseTopic)
                        .WithPayload(answer)
                        .WithQualityOfServiceLevel(_qos)
                        .WithCorrelationData(correlation)
                        .Build(),
                    CancellationToken.None).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // an unanswered request times out at the requester, which counts it as failed
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        });
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync().ConfigureAwait(false);
        }

        _client.Dispose();
    }

    /// <summary>
    /// Runs every client in a loop for <paramref name="duration"/> (after <paramref name="warmup"/>, which is not
    /// counted), each sending its next request as soon as the last one is answered.
    /// </summary>
    public static async Task<LoadResult> RunAsync<TClient>(
        IReadOnlyList<TClient> clients, TimeSpan warmup, TimeSpan duration, Func<TClient, Task<bool>> request)
    {
        var latencies = clients.Select(_ => new List<double>(4096)).ToArray();
        long failed = 0;
        var clock = Stopwatch.StartNew();
        var measuredFrom = warmup;
        var until = warmup + duration;
        await Task.WhenAll(clients.Select((client, index) => Task.Run(async () =>
        {
            while (clock.Elapsed < until)
            {
                var started = Stopwatch.GetTimestamp();
                var ok = await request(client).ConfigureAwait(false);
                var now = clock.Elapsed;
                if (now < measuredFrom || now >= until)
                {
                    continue;
                }

                if (ok)
                {
                    latencies[index].Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                }
                else
                {
                    Interlocked.Increment(ref failed);
                }
            }
        }))).ConfigureAwait(false);
        return LoadResult.From(latencies, failed, duration);
    }

    public static string Text(MqttApplicationMessage message) => Encoding.UTF8.GetString(message.Payload);
}
