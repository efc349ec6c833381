using Enroll.Device.Requests;
using Enroll.Device.Tests.Fakes;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;

namespace Enroll.Device.Tests.Reliability;

public sealed class RegistrationHealthTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task SilentServer_IsReportedAsServerSilent_AndClearedOnceRegistered()
    {
        var device = new DeviceUnderTest();
        var start = device.Service.StartAsync();
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.Registering, Patience);

        device.Time.Advance(device.Options.AttemptTimeout);
        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.WaitingToRetry, Patience);

        Assert.Equal(DeviceFaultKind.ServerSilent, device.Service.Health.FaultOf(DeviceComponents.Registration)?.Kind);
        device.Broker.Responder = request => Answers.Registered(request, "dev_back", device.Time.GetUtcNow());
        await device.Time.AdvanceUntilAsync(TimeSpan.FromSeconds(1), start);
        Assert.Null(device.Service.Health.FaultOf(DeviceComponents.Registration));
    }

    [Fact]
    public async Task BusyServer_IsReportedAsServerBusy_WithItsRetryAfter()
    {
        var device = new DeviceUnderTest();
        var calls = 0;
        device.Broker.Responder = request => Interlocked.Increment(ref calls) == 1
            ? Answers.Error(request, ErrorCodes.Unavailable, retryAfterSeconds: 30)
            : Answers.Registered(request, "dev_busy", device.Time.GetUtcNow());
        var start = device.Service.StartAsync();

        await device.Service.WaitForStatusAsync(s => s.State == DeviceState.WaitingToRetry, Patience);

        var fault = device.Service.Health.FaultOf(DeviceComponents.Registration);
        Assert.Equal(DeviceFaultKind.ServerBusy, fault?.Kind);
        Assert.Contains("30 s", fault!.Message, StringComparison.Ordinal);
        await device.Time.AdvanceUntilAsync(TimeSpan.FromSeconds(30), () => device.Broker.PublishCount(EnrollTopics.Register) == 2);
        await start.WaitAsync(Patience);
        Assert.Null(device.Service.Health.FaultOf(DeviceComponents.Registration));
    }

    [Theory]
    [InlineData(ErrorCodes.Rejected)]
    [InlineData(ErrorCodes.Unauthorized)]
    public async Task PermanentServerError_IsReportedAsServerRefused(string code)
    {
        var device = new DeviceUnderTest(o => o.ProvisioningToken = null);
        device.Broker.Responder = request => Answers.Error(request, code);

        await Assert.ThrowsAsync<EnrollServerException>(() => device.Service.StartAsync().WaitAsync(Patience));

        var fault = device.Service.Health.FaultOf(DeviceComponents.Registration);
        Assert.Equal(DeviceFaultKind.ServerRefused, fault?.Kind);
        Assert.Contains(code, fault!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RetryDelays_ComeFromTheInjectedJitter()
    {
        var busy = new EnrollServerException(ErrorCodes.RateLimited, "slow down", TimeSpan.FromSeconds(100));

        Assert.Equal(TimeSpan.FromSeconds(100), RetryPipelineFactory.ServerDelay(busy, new Jitter(() => 0.0)));
        Assert.Equal(TimeSpan.FromSeconds(110), RetryPipelineFactory.ServerDelay(busy, new Jitter(() => 0.5)));
        Assert.Equal(TimeSpan.FromSeconds(100), RetryPipelineFactory.ServerDelay(busy, null));
    }
}
