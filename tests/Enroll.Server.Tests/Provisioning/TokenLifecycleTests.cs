using Enroll.Device;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Provisioning;

public sealed class TokenLifecycleTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Agent_WhenRegistrationTokenNearsExpiry_RefreshesItWithoutRealWaiting()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(output, timeProvider: time);
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync();
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "care-1", state.Path, token.Token, output, timeProvider: time);
        var agents = device.Services.GetServices<IHostedService>().ToList();
        foreach (var agent in agents)
        {
            await agent.StartAsync(CancellationToken.None);
        }

        var registered = await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Registered, Patience);
        var firstExpiry = registered.RegistrationTokenExpiresAt!.Value;
        Assert.Equal(0, counter[EnrollTopics.TokensRefresh]);

        // 30-day token: the refresh is due at 80 % +/- 5 % of its lifetime. Jump to 86 %.
        time.Advance(TimeSpan.FromDays(30 * 0.86));
        var refreshed = await device.Registration.WaitForStatusAsync(
            s => s.State == DeviceState.Registered && s.RegistrationTokenExpiresAt > firstExpiry && s.AccessTokenExpiresAt > time.GetUtcNow(), Patience);

        Assert.Equal(1, counter[EnrollTopics.TokensRefresh]);
        Assert.True(refreshed.RegistrationTokenExpiresAt >= time.GetUtcNow() + TimeSpan.FromDays(29));
        foreach (var agent in agents)
        {
            await agent.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Start_AfterTokensExpiredWhileOffline_ReRegistersAutomaticallyWithTheSameId()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(output, timeProvider: time);
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        string deviceId;
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "offline-1", state.Path, token.Token, output, timeProvider: time))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
        }

        time.Advance(TimeSpan.FromDays(31));

        await using var back = DeviceHarness.Create(server.MqttEndpoint, "offline-1", state.Path, provisioningToken: null, output, timeProvider: time);
        var identity = await back.Registration.StartAsync().WaitAsync(Patience);

        Assert.Equal(deviceId, identity.DeviceId);
        Assert.False(identity.RegistrationSkipped);
        Assert.True(identity.AccessTokenExpiresAt > time.GetUtcNow());
        Assert.True(identity.RegistrationTokenExpiresAt > time.GetUtcNow());
        Assert.Equal(2, counter[EnrollTopics.Register]);
    }

    [Fact]
    public async Task RevokedDevice_ReprovisionsAskingForItsOldIdAndGetsItBackAfterApproval()
    {
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromHours(1));
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "revoked-1", state.Path, token.Token, output);
        var deviceId = (await device.Registration.StartAsync()).DeviceId;

        await server.RevokeDeviceAsync(deviceId);
        var refresh = device.Registration.RefreshRegistrationTokenAsync();
        var pending = await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience);

        // Even with an auto-approve token, bringing back a revoked device needs an operator.
        var operation = (await server.ListOperationsAsync("pending")).Single();
        Assert.Equal(pending.OperationId, operation.OperationId);
        Assert.Equal(deviceId, operation.ReprovisionOf);
        await server.ApproveAsync(operation.OperationId);
        await refresh.WaitAsync(Patience);

        Assert.Equal(DeviceState.Registered, device.Registration.Status.State);
        Assert.Equal(deviceId, device.Registration.Status.DeviceId);
        Assert.Equal("active", (await server.GetDeviceAsync(deviceId)).Status);
        var stored = await device.Store.LoadAsync();
        var connect = await RawMqttClient.TryConnectAsync(server.MqttEndpoint, "revoked-1", deviceId, stored!.AccessToken);
        Assert.Equal(MqttClientConnectResultCode.Success, connect);
    }

    [Fact]
    public async Task RevokedProvisioningToken_RefusesNewOperations_ButExistingDevicesKeepWorking()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var first = new TempDirectory();
        await using var existing = DeviceHarness.Create(server.MqttEndpoint, "kept-1", first.Path, token.Token, output);
        var identity = await existing.Registration.StartAsync();

        await server.RevokeTokenAsync(token.Id);

        using var second = new TempDirectory();
        await using var newcomer = DeviceHarness.Create(server.MqttEndpoint, "new-1", second.Path, token.Token, output);
        var error = await Assert.ThrowsAsync<EnrollServerException>(() => newcomer.Registration.StartAsync().WaitAsync(Patience));
        Assert.Equal(ErrorCodes.Unauthorized, error.Code);
        Assert.Contains("revoked", error.Message, StringComparison.Ordinal);

        var stored = await existing.Store.LoadAsync();
        Assert.Equal(MqttClientConnectResultCode.Success, await RawMqttClient.TryConnectAsync(server.MqttEndpoint, "kept-1", identity.DeviceId, stored!.AccessToken));
        await existing.Registration.RefreshRegistrationTokenAsync().WaitAsync(Patience);
        Assert.NotEqual(stored.RegistrationToken, (await existing.Store.LoadAsync())!.RegistrationToken);
    }

    [Fact]
    public async Task RefreshedAwayToken_UsedOnceWithinGrace_IsAccepted_ThenAnyReuseRevokesTheDevicesTokens()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(output, o => o.RefreshGrace = TimeSpan.FromSeconds(60), timeProvider: time);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        string deviceId, original;
        DeviceCredentials? current;
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "reuse-1", state.Path, token.Token, output, timeProvider: time))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
            original = (await device.Store.LoadAsync())!.RegistrationToken!;
            await device.Registration.RefreshRegistrationTokenAsync().WaitAsync(Patience);
            current = await device.Store.LoadAsync();
        }

        await using var raw = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "reuse-1");
        await raw.SubscribeAsync(EnrollTopics.ClientResponses("reuse-1"));
        var refresh = $$"""{"registration_token":"{{original}}","client_id":"reuse-1","device_id":"{{deviceId}}"}""";

        // Within the grace window: one more use is fine (the device may have lost the answer).
        await raw.PublishAsync(EnrollTopics.TokensRefresh, refresh, EnrollTopics.ClientResponses("reuse-1"));
        Assert.DoesNotContain("\"error\"", RawMqttClient.Text(await raw.ReceiveAsync()), StringComparison.Ordinal);

        // After it: a copy is in someone else's hands.
        time.Advance(TimeSpan.FromMinutes(2));
        await raw.PublishAsync(EnrollTopics.TokensRefresh, refresh, EnrollTopics.ClientResponses("reuse-1"));
        var answer = RawMqttClient.Text(await raw.ReceiveAsync());
        Assert.Contains("\"unauthorized\"", answer, StringComparison.Ordinal);

        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await RawMqttClient.TryConnectAsync(server.MqttEndpoint, "reuse-1", deviceId, current!.AccessToken));
        var stolen = $$"""{"registration_token":"{{current.RegistrationToken}}","client_id":"reuse-1","device_id":"{{deviceId}}"}""";
        await raw.PublishAsync(EnrollTopics.TokensRefresh, stolen, EnrollTopics.ClientResponses("reuse-1"));
        Assert.Contains("\"unauthorized\"", RawMqttClient.Text(await raw.ReceiveAsync()), StringComparison.Ordinal);
    }

    [Fact]
    public async Task FiftyConcurrentCallers_OnAnExpiredAccessToken_CauseExactlyOneRenewal()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(output, timeProvider: time);
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync();
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "crowd-1", state.Path, token.Token, output, timeProvider: time);
        await device.Registration.StartAsync();
        time.Advance(TimeSpan.FromHours(25));

        var tokens = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Task.Run(() => device.Registration.GetAccessTokenAsync()))).WaitAsync(Patience);

        Assert.Single(tokens.Distinct());
        Assert.Equal(2, counter[EnrollTopics.Register]);
    }

    [Fact]
    public async Task FiftyConcurrentCallers_RefreshingTheRegistrationToken_CauseExactlyOneRefresh()
    {
        await using var server = await TestServer.StartAsync(output);
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync();
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "crowd-2", state.Path, token.Token, output);
        await device.Registration.StartAsync();

        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Task.Run(() => device.Registration.RefreshRegistrationTokenAsync()))).WaitAsync(Patience);

        Assert.Equal(1, counter[EnrollTopics.TokensRefresh]);
    }
}
