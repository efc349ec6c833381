using Enroll.Device.Tests.Fakes;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Reliability;

public sealed class ClockSkewTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    [Theory]
    [InlineData(-24 * 3600)]
    [InlineData(24 * 3600)]
    [InlineData(-90)]
    public async Task SkewedDeviceClock_RenewsOnTheServersSchedule_WithoutALoop_AndReportsClockSkew(int deviceAheadSeconds)
    {
        var skew = TimeSpan.FromSeconds(deviceAheadSeconds);
        // A long attempt timeout: an answer that a busy test machine delivers a few fake steps late is not sent again.
        var device = new DeviceUnderTest(o => o.AttemptTimeout = TimeSpan.FromMinutes(10));
        var lifetime = TimeSpan.FromHours(1);

        // The server's clock is the device's minus the skew.
        device.Broker.Responder = request => Answers.Registered(request, "dev_skewed", device.Time.GetUtcNow() - skew, lifetime);
        await device.Service.StartAsync().WaitAsync(Patience);

        // Measured on the first answer (the fake clock stands still until it arrived): the offset is the skew.
        var first = device.Service.Health.FaultOf(DeviceComponents.Registration);
        Assert.NotNull(first);
        Assert.Contains($"{Math.Abs(deviceAheadSeconds)} s", first.Message, StringComparison.Ordinal);
        Assert.Contains(deviceAheadSeconds > 0 ? "ahead of" : "behind", first.Message, StringComparison.Ordinal);
        using var stop = new CancellationTokenSource();
        var care = device.Service.RunTokenCareAsync(stop.Token);

        await device.Time.DriveAsync(TimeSpan.FromHours(2), TimeSpan.FromSeconds(10));

        // One registration at start and one per 48 minutes (80 % of an hour): 3 in two hours, by the server's clock.
        Assert.InRange(device.Broker.PublishCount(EnrollTopics.Register), 3, 4);
        var fault = device.Service.Health.FaultOf(DeviceComponents.Registration);
        Assert.NotNull(fault);
        Assert.Equal(DeviceFaultKind.ClockSkew, fault.Kind);
        Assert.Equal(DeviceState.Registered, device.Service.Status.State);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => care.WaitAsync(Patience));
    }

    [Fact]
    public async Task SmallSkewWithinTheTolerance_IsNotAFault()
    {
        var device = new DeviceUnderTest();
        device.Broker.Responder = request => Answers.Registered(request, "dev_close", device.Time.GetUtcNow() - TimeSpan.FromSeconds(20));

        await device.Service.StartAsync().WaitAsync(Patience);

        Assert.Null(device.Service.Health.FaultOf(DeviceComponents.Registration));
    }

    [Theory]
    [InlineData(-24 * 3600)]
    [InlineData(24 * 3600)]
    [InlineData(-90)]
    public async Task SkewedDeviceClock_RegistersWithARealServer_WithTokensValidatedByTheServersClock(int deviceAheadSeconds)
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync();
        using var state = new TempDirectory("enroll-skew");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow + TimeSpan.FromSeconds(deviceAheadSeconds));
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "skewed-1", state.Path, token.Token, output, timeProvider: time);

        var identity = await device.Registration.StartAsync().WaitAsync(Patience);

        Assert.StartsWith("dev_", identity.DeviceId, StringComparison.Ordinal);
        var fault = device.Registration.Health.FaultOf(DeviceComponents.Registration);
        Assert.Equal(DeviceFaultKind.ClockSkew, fault?.Kind);

        // The renewal is due about 80 % of the (server's) lifetime after issue, not at once and not a day late.
        var credentials = device.Registration.CurrentCredentials!;
        var untilRenewal = device.Registration.AccessRenewAt(credentials) - credentials.AccessTokenIssuedAt!.Value;
        var lifetime = credentials.AccessTokenExpiresAt!.Value - credentials.AccessTokenIssuedAt!.Value;
        Assert.InRange(untilRenewal / lifetime, 0.74, 0.86);
        Assert.Single(await server.ListDevicesAsync());
    }
}
