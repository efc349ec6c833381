using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Topics;
using Enroll.Server.Refusals;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Http;

/// <summary><c>GET /api/overview</c> and <c>GET /api/refusals</c> against a real server, with real refusals and a real registration.</summary>
public sealed class OverviewApiTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Overview_ShowsRefusedTokens_ARateLimitedClient_AndARegistration()
    {
        await using var server = await TestServer.StartAsync(output, o => o.ClientFailureLimit = 2);
        await using var guesser = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "guesser");
        await guesser.SubscribeAsync(EnrollTopics.ClientResponses("guesser"));
        var codes = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            await guesser.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"guesser","provisioning_token":"ept_abc{{i}}.wrong"}""", EnrollTopics.ClientResponses("guesser"));
            using var answer = JsonDocument.Parse((await guesser.ReceiveAsync()).Payload);
            codes.Add(answer.RootElement.GetProperty("error").GetProperty("code").GetString()!);
        }

        Assert.Equal([ErrorCodes.Unauthorized, ErrorCodes.Unauthorized, ErrorCodes.RateLimited], codes);

        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "gw-overview", state.Path, token.Token, output))
        {
            await device.Registration.StartAsync().WaitAsync(Patience);
        }

        var overview = await Eventually.ReturnsAsync(
            () => server.Http.GetFromJsonAsync("/api/overview", ConsoleJsonContext.Default.FleetOverview)!,
            o => o!.Refusals.Any(r => r.Kind == RefusalLog.RateLimited) && o.Refusals.Where(r => r.Kind == RefusalLog.TokenRefused).Sum(r => r.Count) == 2,
            Patience,
            "the rate-limited client in the overview");
        output.WriteLine(JsonSerializer.Serialize(overview!, ConsoleJsonContext.Default.FleetOverview));
        // Both refused tokens fold into one row (two when the test crosses a minute), their count the two refusals.
        var refused = overview!.Refusals.Where(r => r.Kind == RefusalLog.TokenRefused).ToList();
        Assert.All(refused, r => Assert.Equal("guesser", r.Source));
        Assert.All(refused, r => Assert.Equal("provisioning token: unknown", r.Reason));
        Assert.Equal(2, refused.Sum(r => r.Count));
        Assert.Equal("guesser", Assert.Single(overview.Refusals, r => r.Kind == RefusalLog.RateLimited).Source);

        Assert.Equal(1, overview.DevicesByStatus["active"]);
        Assert.Equal(0, overview.PendingOperations);
        Assert.Equal(60, overview.Registrations.Counts.Count);
        Assert.Equal(1, overview.Registrations.Counts.Sum());
        Assert.True(overview.Registrations.Counts[^1] == 1 || overview.Registrations.Counts[^2] == 1, "the registration is in the last minute");
        Assert.Equal(60, overview.Approvals.Counts.Count);
        Assert.Equal(60, overview.Messages.Counts.Count);
        Assert.Empty(overview.Outboxes);

        var listed = await server.Http.GetFromJsonAsync("/api/refusals?limit=1", ConsoleJsonContext.Default.ItemListRefusalInfo);
        Assert.Single(listed!.Items);
        using var invalid = await server.Http.GetAsync("/api/refusals?limit=0");
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
    }

    [Fact]
    public async Task Overview_WithoutAKeyOrSession_Is401_AndTheWrongKeyIsARefusal()
    {
        await using var server = await TestServer.StartAsync(output);
        using var anonymous = new HttpClient { BaseAddress = server.Http.BaseAddress };
        using var noSession = await anonymous.GetAsync("/api/overview");
        Assert.Equal(HttpStatusCode.Unauthorized, noSession.StatusCode);

        using var wrong = new HttpRequestMessage(HttpMethod.Get, "/api/refusals");
        wrong.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "not-the-key");
        using var refused = await anonymous.SendAsync(wrong);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);

        var refusals = await Eventually.ReturnsAsync(
            () => server.Http.GetFromJsonAsync("/api/refusals", ConsoleJsonContext.Default.ItemListRefusalInfo)!,
            l => l!.Items.Where(r => r.Kind == RefusalLog.CredentialRefused).Sum(r => r.Count) >= 2,
            Patience,
            "the wrong key in the refusal log");
        // No key at all and a wrong one: two refused credentials of this address.
        var wrongKey = refusals!.Items.Where(r => r.Kind == RefusalLog.CredentialRefused).ToList();
        Assert.All(wrongKey, r => Assert.Equal("127.0.0.1", r.Source));
        Assert.Equal(2, wrongKey.Sum(r => r.Count));
    }
}
