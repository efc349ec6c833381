using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Enroll.Device;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

public sealed class BruteForceTests(ITestOutputHelper output)
{
    [Fact]
    public async Task WrongTokens_FromOneClient_AreRateLimitedAfterTheLimit()
    {
        await using var server = await TestServer.StartAsync(output, o => o.ClientFailureLimit = 5);
        await using var guesser = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "guesser");
        await guesser.SubscribeAsync(EnrollTopics.ClientResponses("guesser"));

        var codes = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            await guesser.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"guesser","provisioning_token":"ept_abc{{i}}.wrong"}""", EnrollTopics.ClientResponses("guesser"));
            codes.Add(ErrorCode(await guesser.ReceiveAsync()));
        }

        Assert.Equal(Enumerable.Repeat(ErrorCodes.Unauthorized, 5), codes.Take(5));
        Assert.Equal(Enumerable.Repeat(ErrorCodes.RateLimited, 3), codes.Skip(5));
    }

    [Fact]
    public async Task BurstOfAThousandWrongTokens_DoesNotSlowDownLegitimateDevices()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);

        // The attacker comes from another address (127.0.0.2) with 20 client IDs, 50 guesses each, as fast as it can.
        var attackers = await Task.WhenAll(Enumerable.Range(0, 20).Select(async i =>
        {
            var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, $"attacker-{i}", localAddress: IPAddress.Parse("127.0.0.2"));
            await client.SubscribeAsync(EnrollTopics.ClientResponses($"attacker-{i}"));
            return client;
        }));
        var started = Stopwatch.GetTimestamp();
        var burst = Task.WhenAll(attackers.Select((client, i) => Task.Run(async () =>
        {
            for (var n = 0; n < 50; n++)
            {
                await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"attacker-{{i}}","provisioning_token":"ept_guess{{n}}.secret"}""", EnrollTopics.ClientResponses($"attacker-{i}"));
            }
        })));

        // Meanwhile legitimate devices register with one attempt each and a short attempt timeout: any queueing behind the
        // burst, or any rate limit applied to them, would fail them.
        using var states = new TempDirectory();
        var legitimate = new List<DeviceIdentity>();
        for (var d = 0; d < 5; d++)
        {
            await using var device = DeviceHarness.Create(server.MqttEndpoint, $"legit-{d}", states.Combine($"legit-{d}"), token.Token, output, o =>
            {
                o.MaxAttempts = 1;
                o.AttemptTimeout = TimeSpan.FromSeconds(3);
            });
            legitimate.Add(await device.Registration.StartAsync());
        }

        await burst;
        var answers = new Dictionary<string, int>();
        foreach (var client in attackers)
        {
            for (var n = 0; n < 50; n++)
            {
                var code = ErrorCode(await client.ReceiveAsync(TimeSpan.FromSeconds(20)));
                answers[code] = answers.GetValueOrDefault(code) + 1;
            }

            await client.DisposeAsync();
        }

        // The source's bucket holds 100 failures and refills at 100 a minute, so over a burst of D seconds at most
        // 100 + D × 100 / 60 guesses are checked (the limiter's documented bound); on a loaded machine the burst takes
        // seconds, not the fraction of one it takes on an idle one.
        var elapsed = Stopwatch.GetElapsedTime(started);
        var allowance = 100 + (int)Math.Ceiling(elapsed.TotalSeconds * 100 / 60);
        var mix = $"attacker answers over {elapsed.TotalSeconds:0.0} s (allowance {allowance}): {string.Join(", ", answers.Select(a => $"{a.Key}={a.Value}"))}";
        output.WriteLine(mix);
        Assert.Equal(5, legitimate.Count);
        Assert.Equal(1000, answers.Values.Sum());
        Assert.True(answers.GetValueOrDefault(ErrorCodes.Unauthorized) <= allowance, $"at most the source's allowance is checked at all; {mix}");
        // The rest is refused unchecked: rate_limited once the source's failures are recorded, or unavailable from
        // admission control for the guesses that reached a long queue before they were (the server just started, so
        // the rate it judges by is a fraction of a second's).
        Assert.True(answers.GetValueOrDefault(ErrorCodes.RateLimited) + answers.GetValueOrDefault(ErrorCodes.Unavailable) >= 1000 - allowance, $"the rest of the burst is refused unchecked; {mix}");
        Assert.Equal(5, (await server.ListDevicesAsync()).Count);
    }

    private static string ErrorCode(MQTTnet.MqttApplicationMessage message)
    {
        using var json = JsonDocument.Parse(RawMqttClient.Text(message));
        return json.RootElement.GetProperty("error").GetProperty("code").GetString()!;
    }
}
