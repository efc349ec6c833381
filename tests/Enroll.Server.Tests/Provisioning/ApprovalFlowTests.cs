using Enroll.Device;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Provisioning;

public sealed class ApprovalFlowTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Approve_WhileDeviceWaits_DeviceIsToldByPushAndRegisters()
    {
        // Polling is set to an hour: only the push can finish this within the test's patience.
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromHours(1));
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync(autoApprove: false);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-push", state.Path, token.Token, output);

        var start = device.Registration.StartAsync();
        var pending = await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience);
        var approved = await server.ApproveAsync(pending.OperationId!);
        var identity = await start.WaitAsync(Patience);

        Assert.Equal(approved.DeviceId, identity.DeviceId);
        Assert.Equal(1, counter[EnrollTopics.ProvisioningInit]);
        Assert.Equal(2, counter[EnrollTopics.ProvisioningComplete]);
        var stored = await device.Store.LoadAsync();
        Assert.Null(stored!.PendingOperationId);
        Assert.NotNull(stored.RegistrationToken);
        Assert.Equal("completed", (await server.ListOperationsAsync()).Single().Status);
    }

    [Fact]
    public async Task Approve_WhileDeviceIsAway_DeviceResumesTheSameOperationByPolling()
    {
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromSeconds(1));
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync(autoApprove: false);
        using var state = new TempDirectory();
        string operationId;
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "gw-poll", state.Path, token.Token, output))
        {
            var start = device.Registration.StartAsync();
            operationId = (await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience)).OperationId!;
            await device.Registration.StopAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => start);
        }

        var approved = await server.ApproveAsync(operationId);

        // A restarted device (no Provisioning Token on its command line) finds the operation in its state and asks for it.
        await using var restarted = DeviceHarness.Create(server.MqttEndpoint, "gw-poll", state.Path, provisioningToken: null, output);
        var identity = await restarted.Registration.StartAsync().WaitAsync(Patience);

        Assert.Equal(approved.DeviceId, identity.DeviceId);
        Assert.Equal(1, counter[EnrollTopics.ProvisioningInit]);
        Assert.Single(await server.ListOperationsAsync());
    }

    [Fact]
    public async Task Reject_WhileDeviceWaits_DeviceFailsForGoodWithoutRetrying()
    {
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromHours(1));
        var counter = server.CountRequests();
        var token = await server.CreateTokenAsync(autoApprove: false);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-reject", state.Path, token.Token, output, o => o.MaxAttempts = 10);

        var start = device.Registration.StartAsync();
        var pending = await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience);
        await server.RejectAsync(pending.OperationId!, "unknown hardware");

        var error = await Assert.ThrowsAsync<EnrollServerException>(() => start.WaitAsync(Patience));
        Assert.Equal(ErrorCodes.Rejected, error.Code);
        Assert.Contains("unknown hardware", error.Message, StringComparison.Ordinal);
        Assert.Equal(DeviceState.Failed, device.Registration.Status.State);
        // One poll before the decision and one after the push: a permanent error is never retried.
        Assert.Equal(2, counter[EnrollTopics.ProvisioningComplete]);
        Assert.Null((await device.Store.LoadAsync())!.PendingOperationId);
    }

    [Fact]
    public async Task Operation_LeftPendingPastItsLifetime_ExpiresAndTheDeviceIsTold()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromMinutes(10), timeProvider: time);
        var token = await server.CreateTokenAsync(autoApprove: false);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-expire", state.Path, token.Token, output, timeProvider: time);

        var start = device.Registration.StartAsync();
        await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience);
        time.Advance(TimeSpan.FromHours(25));

        var error = await Assert.ThrowsAsync<EnrollServerException>(() => start.WaitAsync(Patience));
        Assert.Equal(ErrorCodes.Expired, error.Code);
        Assert.Equal("expired", (await server.ListOperationsAsync()).Single().Status);
    }

    [Fact]
    public async Task ServerRestart_WhileDevicePending_TheSameOperationCompletes()
    {
        using var data = new TempDirectory("enroll-server");
        var server = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromSeconds(1), dataDirectory: data.Path);
        var port = server.MqttPort;
        var token = await server.CreateTokenAsync(autoApprove: false);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-restart", state.Path, token.Token, output, o => o.MaxAttempts = 50);

        var start = device.Registration.StartAsync();
        var operationId = (await device.Registration.WaitForStatusAsync(s => s.State == DeviceState.Pending, Patience)).OperationId!;
        await server.DisposeAsync();

        await using var again = await TestServer.StartAsync(output, o => o.PendingPollInterval = TimeSpan.FromSeconds(1), dataDirectory: data.Path, mqttPort: port);
        var operations = await again.ListOperationsAsync("pending");
        Assert.Equal(operationId, Assert.Single(operations).OperationId);
        var approved = await again.ApproveAsync(operationId);
        var identity = await start.WaitAsync(Patience);

        Assert.Equal(approved.DeviceId, identity.DeviceId);
    }

    [Fact]
    public async Task DesiredDeviceId_WhenFree_IsGranted()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-named", state.Path, token.Token, output, o => o.DesiredDeviceId = "plant-7-gateway");

        var identity = await device.Registration.StartAsync().WaitAsync(Patience);

        Assert.Equal("plant-7-gateway", identity.DeviceId);
    }

    [Fact]
    public async Task DesiredDeviceId_OfTheServersOwnBrokerUser_IsRefused()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var state = new TempDirectory();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, "gw-impostor", state.Path, token.Token, output, o => o.DesiredDeviceId = server.Options.BrokerUsername);

        var error = await Assert.ThrowsAsync<EnrollServerException>(() => device.Registration.StartAsync().WaitAsync(Patience));

        Assert.Equal(ErrorCodes.Conflict, error.Code);
        Assert.Contains("reserved", error.Message, StringComparison.Ordinal);
        Assert.Empty(await server.ListDevicesAsync());
    }

    [Fact]
    public async Task DesiredDeviceId_WhenTakenByAnotherDevice_IsRefusedWithAClearConflict()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var first = new TempDirectory();
        await using (var owner = DeviceHarness.Create(server.MqttEndpoint, "gw-owner", first.Path, token.Token, output, o => o.DesiredDeviceId = "plant-7-gateway"))
        {
            await owner.Registration.StartAsync().WaitAsync(Patience);
        }

        using var second = new TempDirectory();
        await using var other = DeviceHarness.Create(server.MqttEndpoint, "gw-other", second.Path, token.Token, output, o => o.DesiredDeviceId = "plant-7-gateway");
        var error = await Assert.ThrowsAsync<EnrollServerException>(() => other.Registration.StartAsync().WaitAsync(Patience));

        Assert.Equal(ErrorCodes.Conflict, error.Code);
        Assert.Contains("plant-7-gateway", error.Message, StringComparison.Ordinal);
        Assert.Contains("taken", error.Message, StringComparison.Ordinal);
    }
}

public sealed class ProvisioningCompleteProofTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Complete_NeedsTheTokenThatStartedTheOperation_EvenFromTheSameClientId()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: false);
        var attackersOwn = await server.CreateTokenAsync(autoApprove: false);
        string operationId;
        await using (var victim = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "gw-victim"))
        {
            await victim.SubscribeAsync(EnrollTopics.ClientResponses("gw-victim"));
            using var init = await AskAsync(victim, EnrollTopics.ProvisioningInit, $$"""{"provisioning_token":"{{token.Token}}","client_id":"gw-victim"}""");
            operationId = init.RootElement.GetProperty("operation_id").GetString()!;
        }

        await server.ApproveAsync(operationId);

        // Someone else connects with the victim's client ID (anonymous clients cannot prove who they are) and has seen the
        // operation ID on its topic.
        await using var attacker = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "gw-victim");
        await attacker.SubscribeAsync(EnrollTopics.ClientResponses("gw-victim"));
        using var withoutToken = await AskAsync(attacker, EnrollTopics.ProvisioningComplete, $$"""{"operation_id":"{{operationId}}","client_id":"gw-victim"}""");
        using var withOwnToken = await AskAsync(attacker, EnrollTopics.ProvisioningComplete, $$"""{"operation_id":"{{operationId}}","client_id":"gw-victim","provisioning_token":"{{attackersOwn.Token}}"}""");
        using var withTheToken = await AskAsync(attacker, EnrollTopics.ProvisioningComplete, $$"""{"operation_id":"{{operationId}}","client_id":"gw-victim","provisioning_token":"{{token.Token}}"}""");

        Assert.Equal(ErrorCodes.InvalidRequest, withoutToken.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(ErrorCodes.NotFound, withOwnToken.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.False(withOwnToken.RootElement.TryGetProperty("registration_token", out _));
        Assert.Equal("approved", withTheToken.RootElement.GetProperty("status").GetString());
        Assert.StartsWith("eyJ", withTheToken.RootElement.GetProperty("registration_token").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Complete_Replayed_HandsOutTheSameRegistrationToken_AndOnceItIsUsed_IsAConflict()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: false);
        await using var device = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "gw-replay");
        await device.SubscribeAsync(EnrollTopics.ClientResponses("gw-replay"));
        using var init = await AskAsync(device, EnrollTopics.ProvisioningInit, $$"""{"provisioning_token":"{{token.Token}}","client_id":"gw-replay"}""");
        var operationId = init.RootElement.GetProperty("operation_id").GetString()!;
        await server.ApproveAsync(operationId);

        // The same request, sent again as it was captured: no second Registration Token is minted.
        var complete = $$"""{"operation_id":"{{operationId}}","client_id":"gw-replay","provisioning_token":"{{token.Token}}","request_id":"r-1"}""";
        using var first = await AskAsync(device, EnrollTopics.ProvisioningComplete, complete);
        using var replayed = await AskAsync(device, EnrollTopics.ProvisioningComplete, complete);
        var registrationToken = first.RootElement.GetProperty("registration_token").GetString()!;
        Assert.Equal(registrationToken, replayed.RootElement.GetProperty("registration_token").GetString());

        using var registered = await AskAsync(device, EnrollTopics.Register, $$"""{"client_id":"gw-replay","registration_token":"{{registrationToken}}"}""");
        Assert.StartsWith("dev_", registered.RootElement.GetProperty("device_id").GetString(), StringComparison.Ordinal);
        Assert.Equal("completed", (await server.ListOperationsAsync()).Single().Status);

        using var afterUse = await AskAsync(device, EnrollTopics.ProvisioningComplete, complete);
        Assert.Equal(ErrorCodes.Conflict, afterUse.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.False(afterUse.RootElement.TryGetProperty("registration_token", out _));
    }

    private static async Task<System.Text.Json.JsonDocument> AskAsync(RawMqttClient client, string topic, string payload)
    {
        var correlation = Guid.NewGuid().ToByteArray();
        await client.PublishAsync(topic, payload, EnrollTopics.ClientResponses(client.Client.Options.ClientId), correlation);
        while (true)
        {
            var answer = await client.ReceiveAsync(TimeSpan.FromSeconds(10));
            if (answer.CorrelationData is { } received && received.AsSpan().SequenceEqual(correlation))
            {
                return System.Text.Json.JsonDocument.Parse(RawMqttClient.Text(answer));
            }
        }
    }
}
