using Enroll.Device.Outbox;
using Enroll.Device.Tests.Fakes;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Enroll.Device.Tests.Reliability;

public sealed class ConnectionRefusalTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task BrokerRefusingEveryFreshToken_IsBackedOff_ReportedAsCredentialsRefused_AndRetriedOnlyAtTheSlowCeiling()
    {
        var device = new DeviceUnderTest();
        device.Broker.Responder = request => Answers.Registered(request, "dev_refused", device.Time.GetUtcNow());
        device.Broker.RefuseDevices = true;
        using var session = new DeviceSession(device.Service, device.Broker, Microsoft.Extensions.Options.Options.Create(device.Options), device.Time, NullLogger<DeviceSession>.Instance, Jitter.None);
        await device.Service.StartAsync().WaitAsync(Patience);
        using var stop = new CancellationTokenSource();
        var care = device.Service.RunTokenCareAsync(stop.Token);
        var connect = session.ConnectAsync(stop.Token);

        await device.Time.DriveAsync(TimeSpan.FromMinutes(30), TimeSpan.FromSeconds(1));

        // Without jitter: refusals 1 and 2 wait 0.75 s and 1.5 s, then one attempt per 3.75 min (5 min spread to 2.5-5 min
        // with jitter). Over 30 minutes that is 3 + 8 refusals at most even at the shortest jittered wait: 3 + 30 / 2.5.
        var refused = device.Broker.RefusedConnects;
        var registrations = device.Broker.PublishCount(EnrollTopics.Register);
        Assert.InRange(refused, DeviceSession.RefusalsBeforeFault, DeviceSession.RefusalsBeforeFault + 12);
        Assert.InRange(registrations, 1, 1 + refused);
        var fault = device.Service.Health.FaultOf(DeviceComponents.Connection);
        Assert.NotNull(fault);
        Assert.Equal(DeviceFaultKind.CredentialsRefused, fault.Kind);
        Assert.Contains("refused", device.Service.Status.Failure, StringComparison.Ordinal);
        Assert.False(connect.IsCompleted);

        // The broker takes the device's tokens again: the next slow attempt connects and the fault is gone.
        device.Broker.RefuseDevices = false;
        var link = await device.Time.AdvanceUntilAsync(TimeSpan.FromMinutes(1), connect, maxSteps: 10);
        Assert.Equal("dev_refused", link.DeviceId);
        Assert.Null(device.Service.Health.FaultOf(DeviceComponents.Connection));
        Assert.Null(device.Service.Status.Failure);
        Assert.Equal(0, session.ConsecutiveRefusals);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => care.WaitAsync(Patience));
    }

    [Fact]
    public async Task OneRefusedToken_IsReplacedByAFreshOneAfterOneShortBackoff_WithoutAFault()
    {
        var device = new DeviceUnderTest();
        device.Broker.Responder = request => Answers.Registered(request, "dev_revoked", device.Time.GetUtcNow());
        device.Broker.RefuseDevices = true;
        using var session = new DeviceSession(device.Service, device.Broker, Microsoft.Extensions.Options.Options.Create(device.Options), device.Time, NullLogger<DeviceSession>.Instance, Jitter.None);
        await device.Service.StartAsync().WaitAsync(Patience);
        using var stop = new CancellationTokenSource();
        var care = device.Service.RunTokenCareAsync(stop.Token);
        var connect = session.ConnectAsync(stop.Token);
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Broker.RefusedConnects), n => n == 1, Patience, "a refused CONNECT");

        device.Broker.RefuseDevices = false;
        await device.Time.AdvanceUntilAsync(TimeSpan.FromSeconds(1), connect);

        Assert.Equal(2, device.Broker.PublishCount(EnrollTopics.Register));
        Assert.Null(device.Service.Health.FaultOf(DeviceComponents.Connection));
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => care.WaitAsync(Patience));
    }
}
