using System.Text;
using Enroll.Protocol.Topics;
using Enroll.Server.Handlers;
using Enroll.Testing;
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
        var answers = new CapturingPublisher();
        var dispatcher = ServerTestKit.Dispatcher(server, answers, time);
        using var rejected = new RejectedRequests(server);

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
        Assert.Equal(served ? 0 : 1, rejected["expired"]);
        Assert.Equal(served ? 1 : 0, (await server.ListDevicesAsync()).Count);
    }
}
