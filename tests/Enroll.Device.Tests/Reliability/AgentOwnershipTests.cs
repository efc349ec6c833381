using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Enroll.Device.Tests.Reliability;

public sealed class AgentOwnershipTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task PermanentRefusal_EndsTheAgent_WithATerminalFailure_AndStopsTheHost()
    {
        await using var server = await TestServer.StartAsync(output);
        using var state = new TempDirectory("enroll-terminal");
        var lifetime = new RecordingLifetime();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(new XunitLoggerProvider(output, "device/")));
        services.AddSingleton<IHostApplicationLifetime>(lifetime);
        services.AddEnrollDevice(o =>
        {
            o.Broker = server.MqttEndpoint;
            o.ClientId = "nobody-1";
            o.StatePath = state.Path;
            o.AttemptTimeout = TimeSpan.FromSeconds(5);
        });
        await using var provider = services.BuildServiceProvider();
        var registration = provider.GetRequiredService<RegistrationService>();
        var agent = provider.GetServices<IHostedService>().OfType<EnrollDeviceAgent>().Single();

        await agent.StartAsync(CancellationToken.None);
        await registration.Terminated.WaitAsync(Patience);

        var failure = Assert.IsType<EnrollServerException>(registration.TerminalFailure);
        Assert.True(failure.IsPermanent);
        Assert.Equal(DeviceState.Failed, registration.Status.State);
        // The agent asks the host to stop after it sees the termination, not before: wait for it (it fails if it never comes).
        await lifetime.StopRequested.WaitAsync(Patience);
        await agent.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task SecondAgentOnTheSameStateFolder_IsRefusedNamingTheHolder_UntilTheFirstStops()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync();
        using var state = new TempDirectory("enroll-owned");
        await using var first = DeviceHarness.Create(server.MqttEndpoint, "owner-1", state.Path, token.Token, output);
        await using var second = DeviceHarness.Create(server.MqttEndpoint, "owner-1", state.Path, token.Token, output);
        await first.Registration.StartAsync().WaitAsync(Patience);

        var refused = await Assert.ThrowsAsync<StateFolderInUseException>(() => second.Registration.StartAsync().WaitAsync(Patience));

        Assert.Equal(Environment.ProcessId, refused.HolderPid);
        Assert.Contains($"process {Environment.ProcessId}", refused.Message, StringComparison.Ordinal);
        Assert.Equal(DeviceState.Failed, second.Registration.Status.State);

        // Storing a message does not need the agent's lock: `enroll device send` works while an agent runs.
        await second.Outbox.SendAsync("telemetry", "{\"t\":1}"u8.ToArray());

        await first.Registration.StopAsync();
        var identity = await second.Registration.StartAsync().WaitAsync(Patience);
        Assert.True(identity.RegistrationSkipped);
    }

    [Fact]
    public async Task AgentBetweenAttempts_KeepsTheStateFolder_SoNoOtherProcessTakesItInTheGap()
    {
        using var state = new TempDirectory("enroll-kept");
        var nowhere = new Uri("mqtt://127.0.0.1:1");
        await using var agent = DeviceHarness.Create(nowhere, "kept-1", state.Path, "ept_x.y", output, o => o.MaxAttempts = 1);
        await using var other = DeviceHarness.Create(nowhere, "kept-1", state.Path, "ept_x.y", output, o => o.MaxAttempts = 1);
        await agent.StartAgentsAsync();
        await Eventually.ReturnsAsync(
            () => Task.FromResult((agent.Registration.Health.FaultOf(DeviceComponents.Registration)?.Kind, agent.Registration.IsRunning)),
            probe => probe is (DeviceFaultKind.BrokerUnreachable, false),
            Patience,
            "the agent stopped between attempts, backing off from an unreachable broker");

        await Assert.ThrowsAsync<StateFolderInUseException>(() => other.Registration.StartAsync().WaitAsync(Patience));

        await agent.StopAgentsAsync();
        await Assert.ThrowsAsync<EnrollTimeoutException>(() => other.Registration.StartAsync().WaitAsync(Patience));
    }

    private sealed class RecordingLifetime : IHostApplicationLifetime
    {
        private readonly TaskCompletionSource _stop = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task StopRequested => _stop.Task;

        public CancellationToken ApplicationStarted => CancellationToken.None;

        public CancellationToken ApplicationStopping => CancellationToken.None;

        public CancellationToken ApplicationStopped => CancellationToken.None;

        public void StopApplication() => _stop.TrySetResult();
    }
}
