using System.Diagnostics;
using Enroll.Protocol.Topics;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Cli.Bench;

/// <summary>What a connect+subscribe storm measured: the time until the last client held its subscriptions.</summary>
internal sealed record ConnectStormResult(double Seconds, int Subscribed, int Failed, bool TimedOut, string? LastFailure);

/// <summary>
/// The connection part of a storm's ideal (SPEC §7): <c>count</c> plain MQTT clients, anonymous like a device before it
/// registers, all start at once; each connects and subscribes, in one SUBSCRIBE as the device library does, to its
/// response topic and to the server's key set (<see cref="EnrollTopics.ServerKeys"/>). Nothing else: no request, no
/// device library. Bounded by a timeout; every client is disconnected and disposed before it returns.
/// </summary>
internal static class ConnectStorm
{
    private static readonly TimeSpan CleanupTimeout = TimeSpan.FromSeconds(60);

    public static async Task<ConnectStormResult> RunAsync(Uri broker, int count, int qos, TimeSpan timeout, string prefix)
    {
        var factory = new MqttClientFactory();
        var clients = Enumerable.Range(0, count).Select(_ => factory.CreateMqttClient()).ToArray();
        var subscribed = 0;
        var failed = 0;
        string? lastFailure = null;
        var lastDone = 0L;
        using var deadline = new CancellationTokenSource(timeout);
        var clock = Stopwatch.StartNew();
        try
        {
            await Task.WhenAll(clients.Select((client, index) => Task.Run(async () =>
            {
                var clientId = $"{prefix}-{index:D6}";
                try
                {
                    var options = new MqttClientOptionsBuilder()
                        .WithTcpServer(broker.Host, broker.Port)
                        .WithClientId(clientId)
                        .WithCleanStart(true)
                        .WithTimeout(timeout);
                    if (broker.Scheme is "mqtts" or "ssl")
                    {
                        options.WithTlsOptions(tls => tls.UseTls().WithTargetHost(broker.Host));
                    }

                    await client.ConnectAsync(options.Build(), deadline.Token).ConfigureAwait(false);
                    var result = await client.SubscribeAsync(
                        new MqttClientSubscribeOptionsBuilder()
                            .WithTopicFilter(EnrollTopics.ClientResponses(clientId), (MqttQualityOfServiceLevel)qos)
                            .WithTopicFilter(EnrollTopics.ServerKeys, (MqttQualityOfServiceLevel)qos)
                            .Build(),
                        deadline.Token).ConfigureAwait(false);
                    if (result.Items.Any(i => (int)i.ResultCode > 2))
                    {
                        throw new InvalidOperationException($"subscription refused: {string.Join(", ", result.Items.Select(i => i.ResultCode))}");
                    }

                    Interlocked.Increment(ref subscribed);
                    InterlockedMax(ref lastDone, clock.ElapsedTicks);
                }
#pragma warning disable CA1031 // a client that does not get in is counted and reported, not thrown: the others still finish
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    Interlocked.Increment(ref failed);
                    Volatile.Write(ref lastFailure, $"{ex.GetType().Name}: {ex.Message}");
                }
            }))).ConfigureAwait(false);
        }
        finally
        {
            await CleanUpAsync(clients).ConfigureAwait(false);
        }

        var seconds = failed == 0 ? (double)Interlocked.Read(ref lastDone) / Stopwatch.Frequency : double.NaN;
        return new ConnectStormResult(seconds, subscribed, failed, deadline.IsCancellationRequested, lastFailure);
    }

    private static async Task CleanUpAsync(IMqttClient[] clients)
    {
        using var bound = new CancellationTokenSource(CleanupTimeout);
        using var gate = new SemaphoreSlim(64);
        await Task.WhenAll(clients.Select(async client =>
        {
            await gate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                if (client.IsConnected && !bound.IsCancellationRequested)
                {
                    await client.DisconnectAsync(new MqttClientDisconnectOptions(), bound.Token).ConfigureAwait(false);
                }
            }
#pragma warning disable CA1031 // cleaning up: a client that cannot say goodbye is disposed all the same
            catch (Exception)
#pragma warning restore CA1031
            {
            }
            finally
            {
                client.Dispose();
                gate.Release();
            }
        })).ConfigureAwait(false);
    }

    private static void InterlockedMax(ref long target, long value)
    {
        var current = Interlocked.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
