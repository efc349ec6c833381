using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Registry;

/// <summary>
/// Registrations sign their Registration Token before the registry commits it: requests that race for one client's
/// device, or for the last uses of a Provisioning Token, still end as if they had run one after another.
/// </summary>
public sealed class RegistrationRaceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TwentyRequestsAtOnceFromOneClient_AllGetTheSameDevice_EachWithAWorkingRegistrationToken()
    {
        // Twenty checks of one client in flight at once, four times the client failure limit (5): valid checks are never
        // refused by the limiter, they wait for a token held by a check in flight.
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true, maxUses: 5);
        await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "racer");
        await client.SubscribeAsync(EnrollTopics.ClientResponses("racer"));

        await Task.WhenAll(Enumerable.Range(0, 20).Select(i => client.PublishAsync(
            EnrollTopics.Register, $$"""{"client_id":"racer","provisioning_token":"{{token.Token}}"}""", EnrollTopics.ClientResponses("racer"), [(byte)i])));
        var answers = new List<JsonDocument>();
        for (var i = 0; i < 20; i++)
        {
            answers.Add(JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(Patience))));
        }

        Assert.All(answers, a => Assert.False(a.RootElement.TryGetProperty("error", out _), a.RootElement.GetRawText()));
        var deviceId = Assert.Single(answers.Select(a => a.RootElement.GetProperty("device_id").GetString()).Distinct());
        Assert.Equal([deviceId], (await server.ListDevicesAsync()).Select(d => d.DeviceId));
        var registrationTokens = answers.Select(a => a.RootElement.GetProperty("registration_token").GetString()!).ToList();
        Assert.Equal(20, registrationTokens.Distinct().Count());

        // Every answered Registration Token is in the ledger for that device: each renews the registration.
        foreach (var (registrationToken, i) in registrationTokens.Select((t, i) => (t, i)))
        {
            await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"racer","device_id":"{{deviceId}}","registration_token":"{{registrationToken}}"}""", EnrollTopics.ClientResponses("racer"), [(byte)(100 + i)]);
            using var renewed = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(Patience)));
            Assert.Equal(deviceId, renewed.RootElement.GetProperty("device_id").GetString());
        }

        foreach (var answer in answers)
        {
            answer.Dispose();
        }
    }

    [Fact]
    public async Task TwentyClientsAtOnce_OnAFiveUseToken_RegisterExactlyFiveDevices()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true, maxUses: 5);

        var answers = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            var clientId = $"client-{i}";
            await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, clientId);
            await client.SubscribeAsync(EnrollTopics.ClientResponses(clientId));
            await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"{{clientId}}","provisioning_token":"{{token.Token}}"}""", EnrollTopics.ClientResponses(clientId), [1]);
            using var answer = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(Patience)));
            return answer.RootElement.TryGetProperty("error", out var error) ? error.GetProperty("code").GetString()! : "registered";
        })));

        Assert.Equal(5, answers.Count(a => a == "registered"));
        Assert.Equal(15, answers.Count(a => a == ErrorCodes.Unauthorized));
        Assert.Equal(5, (await server.ListDevicesAsync()).Count);
    }
}
