using Enroll.Device.Tests.Fakes;
using Enroll.Protocol.Topics;

namespace Enroll.Device.Tests.Reliability;

public sealed class TokenRenewalTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task AccessTokenLifetime_ShorterThanTheRenewalMargin_IsRenewedAtEightyPercent_NotInAStorm(int lifetimeMinutes)
    {
        var lifetime = TimeSpan.FromMinutes(lifetimeMinutes);

        // A long attempt timeout: an answer that a busy test machine delivers a few fake steps late is not sent again.
        var device = new DeviceUnderTest(o => o.AttemptTimeout = TimeSpan.FromMinutes(10));
        device.Broker.Responder = request => Answers.Registered(request, "dev_short", device.Time.GetUtcNow(), lifetime);
        await device.Service.StartAsync().WaitAsync(Patience);
        using var stop = new CancellationTokenSource();
        var care = device.Service.RunTokenCareAsync(stop.Token);

        var window = TimeSpan.FromMinutes(20);
        await device.Time.DriveAsync(window, TimeSpan.FromSeconds(1));

        // One registration at start, then one per 80 % of the lifetime (no jitter here): 20 min / 96 s = 12 for 2 minutes.
        var expected = 1 + (int)(window / (lifetime * 0.8));
        Assert.InRange(device.Broker.PublishCount(EnrollTopics.Register), expected - 1, expected + 1);
        Assert.True(device.Service.CurrentCredentials!.HasValidAccessToken(device.Time.GetUtcNow(), TimeSpan.Zero));
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => care.WaitAsync(Patience));
    }

    [Fact]
    public async Task AccessTokenRenewal_IsJittered_SoAFleetRegisteredTogetherDoesNotRenewTogether()
    {
        var renewals = new List<TimeSpan>();
        foreach (var random in new[] { 0.0, 0.5, 0.99 })
        {
            var device = new DeviceUnderTest(o => o.UseJitter = true, jitter: new Jitter(() => random));
            var service = device.Service;
            device.Broker.Responder = request => Answers.Registered(request, "dev_fleet", device.Time.GetUtcNow(), TimeSpan.FromHours(1));
            await service.StartAsync().WaitAsync(Patience);
            renewals.Add(service.CurrentCredentials!.AccessTokenRenewAt!.Value - device.Time.GetUtcNow());
        }

        // 1 h tokens renewed between 45 and 51 minutes after issue, spread by the jitter.
        Assert.Equal(3, renewals.Distinct().Count());
        Assert.All(renewals, r => Assert.InRange(r.TotalMinutes, 45, 51));
    }
}
