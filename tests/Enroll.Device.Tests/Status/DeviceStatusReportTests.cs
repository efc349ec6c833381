using System.Text.Json.Nodes;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Status;

/// <summary>
/// Status reports (<c>enroll/v1/devices/{id}/status</c>) from the device library to a real server: the outbox a device
/// reports is what the console's API shows, a change is reported again, and a device cannot report for another.
/// </summary>
public sealed class DeviceStatusReportTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private static async Task<JsonNode?> OutboxAsync(TestServer server, string deviceId) =>
        JsonNode.Parse(await server.Http.GetStringAsync(new Uri($"/api/devices/{deviceId}/history", UriKind.Relative)))!["outbox"];

    [Fact]
    public async Task DeviceWithThreeMessagesQueued_ReportsThemPending_ThenReportsTheOutboxEmptyOnceItIsDelivered()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "status-1", state.Path, (await server.CreateTokenAsync()).Token, output, o =>
        {
            o.MaxAttempts = 50;
            o.StatusReportInterval = TimeSpan.FromMilliseconds(200);
        });
        var deviceId = (await device.Registration.StartAsync()).DeviceId;
        for (var i = 0; i < 3; i++)
        {
            await device.Outbox.SendAsync("telemetry", System.Text.Encoding.UTF8.GetBytes($$"""{"n":{{i}}}"""));
        }

        // Everything an application runs but the publisher: the three messages stay in the outbox.
        var agents = device.Services.GetServices<IHostedService>().Where(s => s is not OutboxPublisher).ToList();
        foreach (var agent in agents)
        {
            await agent.StartAsync(CancellationToken.None);
        }

        try
        {
            var pending = await Eventually.ReturnsAsync(() => OutboxAsync(server, deviceId), o => o is not null, Patience, "the first report");
            output.WriteLine(pending!.ToJsonString());
            Assert.Equal(3, pending["pending"]!.GetValue<long>());
            Assert.Equal(device.Outbox.GetStatistics().Bytes, pending["pending_bytes"]!.GetValue<long>());
            Assert.True(pending["oldest_age_seconds"]!.GetValue<double>() >= 0);
            Assert.Equal(0, pending["quarantined"]!.GetValue<long>());
            var status = JsonNode.Parse(await server.Http.GetStringAsync(new Uri($"/api/devices/{deviceId}/status", UriKind.Relative)))!;
            Assert.Equal(3, status["pending"]!.GetValue<long>());

            await device.Publisher.StartAsync(CancellationToken.None);
            var drained = await Eventually.ReturnsAsync(() => OutboxAsync(server, deviceId), o => o!["pending"]!.GetValue<long>() == 0, Patience, "the report of the empty outbox");
            Assert.Equal(0, drained!["pending_bytes"]!.GetValue<long>());
            Assert.Null(drained["oldest_age_seconds"]);
            Assert.Equal(3, await server.CountMessagesAsync(deviceId));
            Assert.True(DateTimeOffset.Parse(drained["reported_at"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture) > DateTimeOffset.Parse(pending["reported_at"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture));
        }
        finally
        {
            await device.Publisher.StopAsync(CancellationToken.None);
            foreach (var agent in Enumerable.Reverse(agents))
            {
                await agent.StopAsync(CancellationToken.None);
            }
        }
    }

    [Fact]
    public async Task Device_ReportingForAnotherDevice_IsRefusedByTheBroker_AndNothingIsStored()
    {
        await using var server = await TestServer.StartAsync(output);
        using var states = new TempDirectory();
        var token = (await server.CreateTokenAsync()).Token;
        string a, b, accessToken;
        await using (var first = DeviceHarness.Create(server.MqttEndpoint, "status-a", states.Combine("a"), token, output, o => o.StatusReportInterval = TimeSpan.Zero))
        {
            a = (await first.Registration.StartAsync()).DeviceId;
            accessToken = (await first.Store.LoadAsync())!.AccessToken!;
        }

        await using (var second = DeviceHarness.Create(server.MqttEndpoint, "status-b", states.Combine("b"), token, output, o => o.StatusReportInterval = TimeSpan.Zero))
        {
            b = (await second.Registration.StartAsync()).DeviceId;
        }

        await using var attacker = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "status-a", a, accessToken);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await attacker.SubscribeAsync(EnrollTopics.DeviceResponses(a)));
        const string body = """{"outbox":{"pending":7,"pending_bytes":70,"quarantined":0},"request_id":"r-1"}""";

        var refused = await attacker.PublishAsync(EnrollRequests.DeviceStatus.TopicFor(b), body, EnrollTopics.DeviceResponses(a), [1]);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, refused.ReasonCode);
        using (var none = await server.Http.GetAsync(new Uri($"/api/devices/{b}/status", UriKind.Relative)))
        {
            Assert.Equal(System.Net.HttpStatusCode.NotFound, none.StatusCode);
        }

        // Its own topic is served (the refusal was about access), and a body that does not add up is refused, clearly.
        Assert.Equal(MqttClientPublishReasonCode.Success, (await attacker.PublishAsync(EnrollRequests.DeviceStatus.TopicFor(a), body, EnrollTopics.DeviceResponses(a), [2])).ReasonCode);
        Assert.Contains("\"received_at\"", RawMqttClient.Text(await attacker.ReceiveAsync(Patience)), StringComparison.Ordinal);
        Assert.Equal(7, (await OutboxAsync(server, a))!["pending"]!.GetValue<long>());
        await attacker.PublishAsync(EnrollRequests.DeviceStatus.TopicFor(a), """{"outbox":{"pending":-1,"pending_bytes":0,"quarantined":0}}""", EnrollTopics.DeviceResponses(a), [3]);
        var answer = JsonNode.Parse(RawMqttClient.Text(await attacker.ReceiveAsync(Patience)))!;
        Assert.Equal("invalid_request", answer["error"]!["code"]!.GetValue<string>());
        Assert.Contains("outbox counts must be 0 to", answer["error"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(7, (await OutboxAsync(server, a))!["pending"]!.GetValue<long>());
    }
}
