using Enroll.Reliability.Tests.Harness;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.FaultMatrix;

/// <summary>
/// Disk full on the state folder (a 4 MB tmpfs): the agent had messages waiting while the broker was away; when it comes
/// back the publisher sends them but cannot delete the acknowledged rows. A send on the full disk fails with a clear error.
/// Once space returns, everything acknowledged is delivered and the agent still delivers new sends.
/// </summary>
public sealed class DiskFullTests(ITestOutputHelper output)
{
    [Fact]
    public async Task StateDiskFull_SendFailsClearly_AgentNamesDiskFull_AndDeliversEverythingOnceSpaceReturns()
    {
        await using var disk = await SmallDisk.MountAsync("4m");
        await using var server = await TestServer.StartAsync();
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        var counter = server.CountRequests();
        await using var run = new FaultRun("disk_full", output, Path.Combine(disk.Path, "state"));
        var deviceId = await run.RegisterAsync(proxy.Endpoint, (await server.CreateTokenAsync()).Token!);
        proxy.Refuse();
        await run.SendAsync(proxy.Endpoint, 3);
        var agent = await run.StartAgentAsync(proxy.Endpoint);
        await disk.FillAsync();

        var refused = await run.SendAsync(proxy.Endpoint, 1);
        output.WriteLine($"send on a full disk: exit {refused.ExitCode}; stderr lines {refused.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length}: {refused.StandardError.Trim().Split('\n')[0]}");
        proxy.ForwardTo(server.MqttEndpoint);
        var measured = await run.MeasureAsync(agent, OutboxFile.DataPublishes(counter, deviceId));
        disk.Free();

        await run.SendAsync(proxy.Endpoint, 1);
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(15));
        run.Report(measured, 3 * FaultRun.CeilingPerLoop, lost, "publishes", "disk_full");
    }
}

/// <summary>
/// The device's clock a day ahead of or behind the server's (libfaketime on the agent only). The device must notice,
/// correct its schedule from the server's own times, and never loop; with the skew corrected it registers and delivers.
/// </summary>
public abstract class ClockSkewTests(ITestOutputHelper output, string fault, string fakeTime)
{
    protected async Task RunAsync()
    {
        await using var server = await TestServer.StartAsync();
        var counter = server.CountRequests();
        await using var run = new FaultRun(fault, output);
        await run.SendAsync(server.MqttEndpoint, 3, fakeTime: fakeTime);

        var agent = await run.StartAgentAsync(server.MqttEndpoint, (await server.CreateTokenAsync()).Token!, fakeTime);
        var measured = await run.MeasureAsync(agent, () => PermanentErrors.Requests(counter));
        var deliveredSkewed = await run.CountLostAsync(server, TimeSpan.FromSeconds(5));
        output.WriteLine($"{fault}: {run.Acknowledged.Count - deliveredSkewed} of {run.Acknowledged.Count} delivered by the skewed agent");

        // The fault removed: the same device with a correct clock delivers whatever the skewed one could not.
        await agent.StopAsync();
        if (deliveredSkewed > 0)
        {
            await run.StartAgentAsync(server.MqttEndpoint);
        }

        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(15));
        run.Report(measured, FaultRun.CeilingPerLoop, lost, "requests", "clock_skew");
    }
}

public sealed class ClockAheadTests(ITestOutputHelper output) : ClockSkewTests(output, "clock_ahead_1d", "+1d")
{
    [Fact]
    public Task ClockOneDayAhead_AgentDoesNotReRegisterInALoop_NamesClockSkew_AndDelivers() => RunAsync();
}

public sealed class ClockBehindTests(ITestOutputHelper output) : ClockSkewTests(output, "clock_behind_1d", "-1d")
{
    [Fact]
    public Task ClockOneDayBehind_AgentDoesNotLoop_NamesClockSkew_AndDelivers() => RunAsync();
}
