using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Handlers;
using Enroll.Server.Tokens;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Registration;

/// <summary>A request whose MQTT 5 Message Expiry passed while it waited in the server's queue is dropped, not served.</summary>
public sealed class RequestExpiryTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(-1, false)]
    [InlineData(0, false)]
    [InlineData(5, true)]
    public async Task Request_IsServedOnlyBeforeItExpires(int secondsLeft, bool served)
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var services = server.Host.Services;
        var answers = new CapturingPublisher();
        var dispatcher = new RequestDispatcher(
            services.GetServices<RequestRoute>(),
            services.GetRequiredService<RequestQueue>(),
            services.GetRequiredService<EncryptionKeyRing>(),
            answers,
            services.GetRequiredService<IOptions<EnrollServerOptions>>(),
            services.GetRequiredService<ServerMetrics>(),
            NullLogger<RequestDispatcher>.Instance,
            time);
        var expired = 0L;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Scope == services.GetRequiredService<IMeterFactory>() && instrument.Name == "enroll.server.requests.rejected")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "reason" && (string?)tag.Value == "expired")
                {
                    Interlocked.Add(ref expired, value);
                }
            }
        });
        listener.Start();

        var receivedAt = time.GetUtcNow() - TimeSpan.FromSeconds(10);
        await dispatcher.ProcessAsync(
            new IncomingRequest(EnrollTopics.Register, Encoding.UTF8.GetBytes($$"""{"client_id":"late-1","provisioning_token":"{{token.Token}}"}"""))
            {
                ResponseTopic = EnrollTopics.ClientResponses("late-1"),
                CorrelationData = [1],
                SenderClientId = "late-1",
                ReceivedAt = receivedAt,
                ExpiresAt = time.GetUtcNow() + TimeSpan.FromSeconds(secondsLeft),
            },
            CancellationToken.None);

        Assert.Equal(served ? 1 : 0, answers.Answers.Count);
        Assert.Equal(served ? 0 : 1, Interlocked.Read(ref expired));
        Assert.Equal(served ? 1 : 0, (await server.ListDevicesAsync()).Count);
    }

    private sealed class CapturingPublisher : IResponsePublisher
    {
        public ConcurrentQueue<byte[]> Answers { get; } = new();

        public Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json")
        {
            Answers.Enqueue(payload);
            return Task.CompletedTask;
        }
    }
}
