using Enroll.Protocol.Topics;
using Enroll.Reliability.Tests.Harness;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.FaultMatrix;

/// <summary>
/// The server answers a permanent error. The agent must not repeat a request that cannot succeed: a handful of attempts,
/// then a persistent state naming the refusal (and, per issue 10, the agent ends instead of staying alive for nothing).
/// After the operator gives it a new Provisioning Token, the messages stored meanwhile are delivered.
/// </summary>
internal static class PermanentErrors
{
    public static int Requests(RequestCounter counter) =>
        counter[EnrollTopics.Register] + counter[EnrollTopics.ProvisioningInit] + counter[EnrollTopics.ProvisioningComplete] + counter[EnrollTopics.TokensRefresh];

    public static async Task RecoverAndReportAsync(FaultRun run, TestServer server, RunningAgent agent, Measurement measured, RequestCounter counter, params string[] alsoNamed)
    {
        await agent.StopAsync();
        await run.StartAgentAsync(server.MqttEndpoint, (await server.CreateTokenAsync()).Token!);
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(20));
        _ = counter;

        // One loop sends requests; a permanent answer allows no retry at all, so one backoff loop's ceiling is generous.
        run.Report(measured, FaultRun.CeilingPerLoop, lost, "requests", ["server_refused", "credentials_refused", .. alsoNamed]);
    }
}

/// <summary>unauthorized: the Provisioning Token was revoked before the device used it.</summary>
public sealed class TokenRevokedTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ProvisioningTokenRevoked_AgentDoesNotRetryARefusal_NamesServerRefused_AndDeliversWithANewToken()
    {
        await using var server = await TestServer.StartAsync();
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync();
        await server.RevokeTokenAsync(token.Id);
        await using var run = new FaultRun("refused_unauthorized", output);
        await run.SendAsync(server.MqttEndpoint, 3);

        var agent = await run.StartAgentAsync(server.MqttEndpoint, token.Token!);
        var measured = await run.MeasureAsync(agent, () => PermanentErrors.Requests(counter));
        await PermanentErrors.RecoverAndReportAsync(run, server, agent, measured, counter);
    }
}

/// <summary>revoked device: registered, then revoked by an operator; its single-use token cannot re-provision it.</summary>
public sealed class DeviceRevokedTests(ITestOutputHelper output)
{
    [Fact]
    public async Task DeviceRevoked_AgentDoesNotReRegisterInALoop_NamesTheRefusal_AndDeliversWithANewToken()
    {
        await using var server = await TestServer.StartAsync();
        var counter = server.CountRequests();
        await using var run = new FaultRun("refused_revoked", output);
        var deviceId = await run.RegisterAsync(server.MqttEndpoint, (await server.CreateTokenAsync(maxUses: 1)).Token!);
        await server.RevokeDeviceAsync(deviceId);
        await run.SendAsync(server.MqttEndpoint, 3);

        // The broker refuses the revoked device, the server its Registration Token; holding a Provisioning Token, the
        // device asks to be provisioned again, which a revoked device needs an operator for: pending, not a loop.
        var agent = await run.StartAgentAsync(server.MqttEndpoint);
        var measured = await run.MeasureAsync(agent, () => PermanentErrors.Requests(counter));

        // The operator brings the device back: the waiting agent gets its old Device ID and delivers what it kept.
        var pending = Assert.Single(await server.ListOperationsAsync("pending"));
        await server.ApproveAsync(pending.OperationId);
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(30));
        run.Report(measured, FaultRun.CeilingPerLoop, lost, "requests", "server_refused", "credentials_refused", "pending");
    }
}

/// <summary>conflict: the device asks for a Device ID another device already has.</summary>
public sealed class DeviceIdConflictTests(ITestOutputHelper output)
{
    [Fact]
    public async Task DesiredDeviceIdTaken_AgentDoesNotRetryTheConflict_NamesServerRefused_AndDeliversWithANewToken()
    {
        await using var server = await TestServer.StartAsync();
        var counter = server.CountRequests();
        await using (var other = new FaultRun("conflict_holder", output))
        {
            await other.RegisterAsync(server.MqttEndpoint, (await server.CreateTokenAsync()).Token!, "--desired-device-id", "taken-id");
        }

        await using var run = new FaultRun("refused_conflict", output);
        await run.SendAsync(server.MqttEndpoint, 3);
        var agent = await run.StartAgentAsync(server.MqttEndpoint, (await server.CreateTokenAsync()).Token!, null, "--desired-device-id", "taken-id");
        var measured = await run.MeasureAsync(agent, () => PermanentErrors.Requests(counter));
        await PermanentErrors.RecoverAndReportAsync(run, server, agent, measured, counter);
    }
}
