using System.Net;
using System.Text;
using System.Text.Json;
using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Server.Commands;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Commands;

/// <summary>
/// Commands end to end on the embedded broker (SPEC §2.6): the operator's HTTP API on one side, a device spoken for by a
/// raw MQTT client on the other.
/// </summary>
public sealed class CommandTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _states = new();
    private TestServer _server = null!;

    // Bodies and requests may be larger than the command limits here, so that the limits, not the transport's, refuse them.
    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output, o =>
    {
        o.MaxAdminRequestBytes = 256 * 1024;
        o.MaxRequestBytes = 256 * 1024;
    });

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _states.Dispose();
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(TestServer server, string deviceId, object body, string? wait = null)
    {
        var url = $"/api/devices/{deviceId}/commands" + (wait is null ? string.Empty : $"?wait={wait}");
        using var response = await server.Http.PostAsync(url, new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));
        return (response.StatusCode, await Body(response));
    }

    private static async Task<JsonElement> Body(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();

    private async Task<JsonElement> GetAsync(string commandId)
    {
        using var response = await _server.Http.GetAsync($"/api/commands/{commandId}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await Body(response);
    }

    private static string State(JsonElement command) => command.GetProperty("state").GetString()!;

    private static string Id(JsonElement command) => command.GetProperty("command_id").GetString()!;

    [Fact]
    public async Task Command_ToAConnectedDevice_IsDeliveredAtOnce_AndTheWaitReturnsItsResult()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-online", output);
        await using var device = await CommandDevice.ConnectAsync(_server.MqttEndpoint, "cmd-online", identity);

        var sending = SendAsync(_server, device.DeviceId, new { name = "set-rate", payload = new { rate = 5 }, ttl = "10m" }, wait: "30s");
        var command = await device.NextCommandAsync();
        var commandId = command.GetProperty("command_id").GetString()!;
        Assert.Equal("set-rate", command.GetProperty("name").GetString());
        Assert.Equal(5, command.GetProperty("payload").GetProperty("rate").GetInt32());
        Assert.True(command.TryGetProperty("expires_at", out _));
        await Eventually.ReturnsAsync(async () => State(await GetAsync(commandId)), s => s == CommandStatuses.Sent, TimeSpan.FromSeconds(10), "the command marked sent after it was published");
        var answer = await device.AnswerAsync(commandId, CommandStatuses.Succeeded, """{"applied":5}""", "done");
        var (status, result) = await sending;

        Assert.Equal(commandId, answer.GetProperty("command_id").GetString());
        Assert.Equal(CommandStatuses.Succeeded, answer.GetProperty("state").GetString());
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(commandId, Id(result));
        Assert.Equal(CommandStatuses.Succeeded, State(result));
        Assert.Equal(5, result.GetProperty("result").GetProperty("applied").GetInt32());
        Assert.Equal("done", result.GetProperty("message").GetString());
        var stored = await GetAsync(commandId);
        Assert.Equal(CommandStatuses.Succeeded, State(stored));
        Assert.True(stored.TryGetProperty("finished_at", out _));

        // A second result (a redelivered command answered again) answers the recorded state and changes nothing.
        var again = await device.AnswerAsync(commandId, CommandStatuses.Failed, message: "late");
        Assert.Equal(CommandStatuses.Succeeded, again.GetProperty("state").GetString());
        Assert.Equal("done", (await GetAsync(commandId)).GetProperty("message").GetString());
    }

    [Fact]
    public async Task Command_WithoutAWait_Answers202WithItsState_AndAWaitThatRunsOut_Answers202Too()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-202", output);

        var (status, body) = await SendAsync(_server, identity.DeviceId, new { name = "reboot" });
        var (waitedStatus, waited) = await SendAsync(_server, identity.DeviceId, new { name = "reboot" }, wait: "1");

        Assert.Equal(HttpStatusCode.Accepted, status);
        Assert.Equal(CommandStatuses.Queued, State(body));
        Assert.False(body.TryGetProperty("payload", out _));
        var ttl = body.GetProperty("expires_at").GetDateTimeOffset() - body.GetProperty("created_at").GetDateTimeOffset();
        Assert.Equal(CommandLimits.DefaultTtl, ttl);
        Assert.Equal(HttpStatusCode.Accepted, waitedStatus);
        Assert.Equal(CommandStatuses.Queued, State(waited));
    }

    [Fact]
    public async Task Commands_ForAnOfflineDevice_AreDeliveredOnCommandsPending_OldestFirst_AndResultsRecorded()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-offline", output);
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var (status, body) = await SendAsync(_server, identity.DeviceId, new { name = $"step-{i}", payload = i });
            Assert.Equal(HttpStatusCode.Accepted, status);
            Assert.Equal(CommandStatuses.Queued, State(body));
            ids.Add(Id(body));
        }

        await using var device = await CommandDevice.ConnectAsync(_server.MqttEndpoint, "cmd-offline", identity);
        var pending = await device.RequestAsync("commands/pending", "{}");
        var delivered = new List<JsonElement>();
        for (var i = 0; i < 3; i++)
        {
            delivered.Add(await device.NextCommandAsync());
        }

        Assert.Equal(3, pending.GetProperty("delivered").GetInt32());
        Assert.Equal(ids, delivered.Select(c => c.GetProperty("command_id").GetString()));
        Assert.Equal([0, 1, 2], delivered.Select(c => c.GetProperty("payload").GetInt32()));
        foreach (var id in ids)
        {
            Assert.Equal(CommandStatuses.Sent, State(await GetAsync(id)));
        }

        await device.AnswerAsync(ids[0], CommandStatuses.Succeeded);
        await device.AnswerAsync(ids[1], CommandStatuses.Rejected, message: "no handler for step-1");
        await device.AnswerAsync(ids[2], CommandStatuses.Failed, message: "boom");
        Assert.Equal([CommandStatuses.Succeeded, CommandStatuses.Rejected, CommandStatuses.Failed], await Task.WhenAll(ids.Select(async id => State(await GetAsync(id)))));
        using var list = await _server.Http.GetAsync($"/api/devices/{identity.DeviceId}/commands?state=failed");
        Assert.Equal([ids[2]], (await Body(list)).GetProperty("items").EnumerateArray().Select(Id));

        // Nothing is left to deliver.
        Assert.Equal(0, (await device.RequestAsync("commands/pending", "{}")).GetProperty("delivered").GetInt32());
    }

    [Fact]
    public async Task Cancel_OfAQueuedCommand_KeepsItFromTheDevice_AndCancelingAgainIs409()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-cancel", output);
        var (_, body) = await SendAsync(_server, identity.DeviceId, new { name = "wipe" });

        using var canceled = await _server.Http.PostAsync($"/api/commands/{Id(body)}/cancel", null);
        using var again = await _server.Http.PostAsync($"/api/commands/{Id(body)}/cancel", null);
        using var unknown = await _server.Http.PostAsync("/api/commands/cmd_nobody/cancel", null);

        Assert.Equal(HttpStatusCode.OK, canceled.StatusCode);
        Assert.Equal(CommandStatuses.Canceled, State(await Body(canceled)));
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        Assert.Contains("already canceled", (await Body(again)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        await using var device = await CommandDevice.ConnectAsync(_server.MqttEndpoint, "cmd-cancel", identity);
        Assert.Equal(0, (await device.RequestAsync("commands/pending", "{}")).GetProperty("delivered").GetInt32());
        Assert.False(await device.GetsACommandWithinAsync(TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public async Task The101stOutstandingCommand_IsRefusedWith409NamingTheLimit()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-101", output);
        for (var i = 0; i < CommandLimits.MaxOutstandingPerDevice; i++)
        {
            Assert.Equal(HttpStatusCode.Accepted, (await SendAsync(_server, identity.DeviceId, new { name = "n", payload = i })).Status);
        }

        var (status, body) = await SendAsync(_server, identity.DeviceId, new { name = "one-too-many" });

        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Equal("too many commands", body.GetProperty("title").GetString());
        Assert.Contains("100", body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        using var list = await _server.Http.GetAsync($"/api/commands?device={identity.DeviceId}&limit=1000");
        Assert.Equal(100, (await Body(list)).GetProperty("items").GetArrayLength());
    }

    [Fact]
    public async Task AnotherDevice_CannotAnswerACommand_ItIsRefusedAndTheStateIsUnchanged()
    {
        var owner = await CommandDevice.RegisterAsync(_server, _states, "cmd-owner", output);
        var intruderIdentity = await CommandDevice.RegisterAsync(_server, _states, "cmd-intruder", output);
        var (_, body) = await SendAsync(_server, owner.DeviceId, new { name = "unlock" });
        await using var intruder = await CommandDevice.ConnectAsync(_server.MqttEndpoint, "cmd-intruder", intruderIdentity);

        // On its own topic, naming the other device's command: answered as an unknown command.
        var answer = await intruder.AnswerAsync(Id(body), CommandStatuses.Succeeded);
        // On the owner's topic: the broker refuses the publish.
        var publish = await intruder.Client.PublishAsync(
            $"enroll/v1/devices/{owner.DeviceId}/commands/result",
            JsonSerializer.Serialize(new { command_id = Id(body), status = "succeeded" }),
            EnrollTopics.DeviceResponses(intruder.DeviceId),
            [1]);

        Assert.Equal("not_found", answer.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, publish.ReasonCode);
        var stored = await GetAsync(Id(body));
        Assert.Equal(CommandStatuses.Queued, State(stored));
        Assert.False(stored.TryGetProperty("finished_at", out _));
    }

    [Fact]
    public async Task AResult_WithAStatusThatIsNotAResult_OrOverTheLimit_IsRefusedAsInvalid()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-invalid", output);
        var (_, body) = await SendAsync(_server, identity.DeviceId, new { name = "x" });
        await using var device = await CommandDevice.ConnectAsync(_server.MqttEndpoint, "cmd-invalid", identity);

        var canceledStatus = await device.AnswerAsync(Id(body), CommandStatuses.Canceled);
        var tooBig = await device.AnswerAsync(Id(body), CommandStatuses.Succeeded, JsonSerializer.Serialize(new string('x', CommandLimits.MaxPayloadBytes)));

        Assert.Equal("invalid_request", canceledStatus.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("succeeded, failed, rejected", canceledStatus.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("invalid_request", tooBig.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("65,536", tooBig.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(CommandStatuses.Queued, State(await GetAsync(Id(body))));
    }

    [Theory]
    [InlineData("""{"payload":1}""", "invalid name", "name is required")]
    [InlineData("""{"name":"a b"}""", "invalid name", "spaces")]
    [InlineData("""{"name":"x","ttl":"8d"}""", "invalid ttl", "1s to 7d")]
    [InlineData("""{"name":"x","ttl":0.5}""", "invalid ttl", "1s to 7d")]
    [InlineData("""{"name":"x","ttl":"soon"}""", "invalid ttl", "1s to 7d")]
    [InlineData("""{"name":"x","colour":"red"}""", "invalid body", "unknown field colour")]
    public async Task BadInput_Is400_WithTheLimitInTheDetail(string json, string title, string detail)
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-400", output);

        using var response = await _server.Http.PostAsync($"/api/devices/{identity.DeviceId}/commands", new StringContent(json, Encoding.UTF8, "application/json"));
        var body = await Body(response);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(title, body.GetProperty("title").GetString());
        Assert.Contains(detail, body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        using var list = await _server.Http.GetAsync($"/api/devices/{identity.DeviceId}/commands");
        Assert.Equal(0, (await Body(list)).GetProperty("items").GetArrayLength());
    }

    [Fact]
    public async Task OversizedPayloads_LongWaits_AndUnknownDevicesOrCommands_AreRefused()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-refused", output);

        var (payloadStatus, payloadBody) = await SendAsync(_server, identity.DeviceId, new { name = "x", payload = new string('x', CommandLimits.MaxPayloadBytes) });
        var (waitStatus, waitBody) = await SendAsync(_server, identity.DeviceId, new { name = "x" }, wait: "10m");
        var (unknownStatus, _) = await SendAsync(_server, "dev_nobody", new { name = "x" });
        using var unknownCommand = await _server.Http.GetAsync("/api/commands/cmd_nobody");
        using var unknownDeviceList = await _server.Http.GetAsync("/api/devices/dev_nobody/commands");
        using var badState = await _server.Http.GetAsync("/api/commands?state=done");

        Assert.Equal(HttpStatusCode.BadRequest, payloadStatus);
        Assert.Contains("65,536", payloadBody.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, waitStatus);
        Assert.Contains("5m", waitBody.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, unknownStatus);
        Assert.Equal(HttpStatusCode.NotFound, unknownCommand.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, unknownDeviceList.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, badState.StatusCode);
    }

    [Fact]
    public async Task AFleetCommand_QueuesOneCommandPerDeviceOfTheOrg_AndReportsPerStateCounts()
    {
        var online = await CommandDevice.RegisterAsync(_server, _states, "fleet-online", output);
        var offline = await CommandDevice.RegisterAsync(_server, _states, "fleet-offline", output);
        await using var device = await CommandDevice.ConnectAsync(_server.MqttEndpoint, "fleet-online", online);

        using var created = await _server.Http.PostAsync("/api/commands/rollouts", new StringContent(
            """{"org":"test-org","name":"update","payload":{"v":2},"ttl":"10m","rate_per_minute":6000}""", Encoding.UTF8, "application/json"));
        var rollout = await Body(created);
        var rolloutId = rollout.GetProperty("rollout_id").GetString()!;
        var command = await device.NextCommandAsync();
        await device.AnswerAsync(command.GetProperty("command_id").GetString()!, CommandStatuses.Succeeded);
        var progress = await Eventually.ReturnsAsync(
            async () =>
            {
                using var response = await _server.Http.GetAsync($"/api/commands/rollouts/{rolloutId}");
                return await Body(response);
            },
            p => p.GetProperty("waiting").GetInt32() == 0 && p.GetProperty("states").TryGetProperty("succeeded", out _),
            TimeSpan.FromSeconds(30),
            "both devices' commands queued and the online one's answered");

        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal(2, rollout.GetProperty("total").GetInt32());
        Assert.Equal("update", command.GetProperty("name").GetString());
        Assert.Equal(2, command.GetProperty("payload").GetProperty("v").GetInt32());
        Assert.Equal(1, progress.GetProperty("states").GetProperty("succeeded").GetInt32());
        Assert.Equal(1, progress.GetProperty("states").GetProperty("queued").GetInt32());
        Assert.False(progress.GetProperty("done").GetBoolean());
        using var offlineCommands = await _server.Http.GetAsync($"/api/devices/{offline.DeviceId}/commands");
        Assert.Equal(rolloutId, (await Body(offlineCommands)).GetProperty("items")[0].GetProperty("rollout_id").GetString());
    }

    [Theory]
    [InlineData("""{"name":"x"}""", "invalid org")]
    [InlineData("""{"org":"test-org","name":"x","where":{"site":"north"}}""", "invalid where")]
    [InlineData("""{"org":"test-org","name":"x","rate_per_minute":0}""", "invalid rate_per_minute")]
    [InlineData("""{"org":"test-org","name":"x","ttl":"9d"}""", "invalid ttl")]
    public async Task AFleetCommand_WithBadInput_Is400(string json, string title)
    {
        using var response = await _server.Http.PostAsync("/api/commands/rollouts", new StringContent(json, Encoding.UTF8, "application/json"));
        using var unknown = await _server.Http.GetAsync("/api/commands/rollouts/rol_nobody");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(title, (await Body(response)).GetProperty("title").GetString());
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task ListingAllCommands_PagesWithALinkHeader()
    {
        var identity = await CommandDevice.RegisterAsync(_server, _states, "cmd-pages", output);
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(Id((await SendAsync(_server, identity.DeviceId, new { name = "n" })).Body));
        }

        var seen = new List<string>();
        var url = "/api/commands?limit=2";
        while (url is not null)
        {
            using var response = await _server.Http.GetAsync(url);
            seen.AddRange((await Body(response)).GetProperty("items").EnumerateArray().Select(Id));
            url = response.Headers.TryGetValues("Link", out var links) ? links.Single().Split('<', '>')[1] : null;
        }

        Assert.Equal(ids, seen);
    }
}

/// <summary>Commands whose time to live passed: never delivered, and marked expired by the sweep (the server's clock is fake).</summary>
public sealed class CommandExpiryTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ACommandThatExpiredBeforeTheDeviceCame_IsNeverDelivered_AndIsExpired()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(output, timeProvider: clock);
        using var states = new TempDirectory();
        var identity = await CommandDevice.RegisterAsync(server, states, "cmd-expired", output);
        using var sent = await server.Http.PostAsync($"/api/devices/{identity.DeviceId}/commands", new StringContent("""{"name":"late","ttl":"2s"}""", Encoding.UTF8, "application/json"));
        var commandId = JsonDocument.Parse(await sent.Content.ReadAsStringAsync()).RootElement.GetProperty("command_id").GetString()!;
        using var kept = await server.Http.PostAsync($"/api/devices/{identity.DeviceId}/commands", new StringContent("""{"name":"kept","ttl":"1h"}""", Encoding.UTF8, "application/json"));
        clock.Advance(TimeSpan.FromSeconds(3));

        await using var device = await CommandDevice.ConnectAsync(server.MqttEndpoint, "cmd-expired", identity);
        var pending = await device.RequestAsync("commands/pending", "{}");
        var delivered = await device.NextCommandAsync();

        Assert.Equal(1, pending.GetProperty("delivered").GetInt32());
        Assert.Equal("kept", delivered.GetProperty("name").GetString());
        Assert.False(await device.GetsACommandWithinAsync(TimeSpan.FromMilliseconds(300)));
        var swept = server.Host.Services.GetRequiredService<CommandWaiters>().WaitAsync(commandId, TimeSpan.FromHours(1), CancellationToken.None);
        var expired = await clock.AdvanceUntilAsync(CommandExpirySweeper.Interval, swept);
        Assert.Equal(CommandStatuses.Expired, expired!.State);
        Assert.Equal(CommandStatuses.Expired, (await server.Host.Services.GetRequiredService<Enroll.Server.Registry.ICommandStore>().GetCommandAsync(commandId))!.State);
    }
}
