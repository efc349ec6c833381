using System.Collections.Concurrent;
using System.Reflection;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Server.Registry;
using Enroll.Server.Tests.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

/// <summary>
/// The failure limits are the registry's, not an instance's: two servers on one PostgreSQL database refuse a client
/// that guessed on both after the documented bound (limit + one per other instance), and a valid device is not affected.
/// </summary>
[Collection(PostgresGroup.Name)]
public sealed class SharedFailureLimitTests(PostgresServer postgres, ITestOutputHelper output)
{
    [Fact]
    public async Task WrongTokensAlternatedBetweenTwoInstances_AreRateLimitedAfterTheLimitPlusOne_AndAValidDeviceOnEitherStillRegisters()
    {
        var database = await postgres.CreateDatabaseAsync("failures");
        // The clock stands still, so no token comes back while the test runs however slow the machine.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var a = await TestServer.StartAsync(output, o => { o.Database = database; o.ClientFailureLimit = 5; }, timeProvider: clock);
        await using var b = await TestServer.StartAsync(output, o => { o.Database = database; o.ClientFailureLimit = 5; }, timeProvider: clock);
        var token = await a.CreateTokenAsync(autoApprove: true);
        await using var onA = await Connect(a, "guesser");
        await using var onB = await Connect(b, "guesser");

        var codes = new List<string>();
        for (var i = 0; i < 12; i++)
        {
            codes.Add(await Register(i % 2 == 0 ? onA : onB, "guesser", $"ept_abc{i}.wrong"));
        }

        // A's fifth failure (the fifth in all) limits the key; B, which last heard of it after the fourth, checks one
        // more and its recorded failure tells it: 6 checked, then both refuse.
        Assert.Equal(Enumerable.Repeat(ErrorCodes.Unauthorized, 6), codes.Take(6));
        Assert.Equal(Enumerable.Repeat(ErrorCodes.RateLimited, 6), codes.Skip(6));

        foreach (var (server, clientId) in new[] { (b, "legit-b"), (a, "legit-a") })
        {
            await using var device = await Connect(server, clientId);
            Assert.Equal("registered", await Register(device, clientId, token.Token!));
        }

        // The guesser's client stays refused on both, even with the right token.
        Assert.Equal(ErrorCodes.RateLimited, await Register(onB, "guesser", token.Token!));
        Assert.Equal(2, (await b.ListDevicesAsync()).Count);
    }

    [Fact]
    public async Task FailuresRecordedAtOnceByTwoStores_OnOneDatabase_AreAllCounted()
    {
        var database = await postgres.CreateDatabaseAsync("failures");
        await using var one = new PostgresRegistry(database);
        await using var two = new PostgresRegistry(database);
        var at = new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

        await Task.WhenAll(Enumerable.Range(0, 100).Select(i => Task.Run(() => (i % 2 == 0 ? one : two).RecordCredentialFailureAsync("client:both", 1000, TimeSpan.FromSeconds(1000), at))));

        Assert.Equal(at + TimeSpan.FromSeconds(100), (await one.FindCredentialFailuresAsync("client:both", at))!.FullAt);
    }

    internal static async Task<RawMqttClient> Connect(TestServer server, string clientId)
    {
        var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, clientId);
        await client.SubscribeAsync(EnrollTopics.ClientResponses(clientId));
        return client;
    }

    /// <summary>One registration request; its error code, or "registered".</summary>
    internal static async Task<string> Register(RawMqttClient client, string clientId, string provisioningToken)
    {
        await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"{{clientId}}","provisioning_token":"{{provisioningToken}}"}""", EnrollTopics.ClientResponses(clientId));
        using var answer = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(TimeSpan.FromSeconds(30))));
        return answer.RootElement.TryGetProperty("error", out var error) ? error.GetProperty("code").GetString()! : "registered";
    }
}

/// <summary>The failure counters on the default SQLite registry: they survive a restart, and valid devices never reach them.</summary>
public sealed class FailureCountersTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AClientLimitedBeforeARestart_IsStillLimitedAfterIt_UntilATokenComesBack()
    {
        using var folder = new TempDirectory("enroll-restart");
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var codes = new List<string>();
        await using (var before = await TestServer.StartAsync(output, o => o.ClientFailureLimit = 5, dataDirectory: folder.Path, timeProvider: clock))
        {
            await using var guesser = await SharedFailureLimitTests.Connect(before, "guesser");
            for (var i = 0; i < 6; i++)
            {
                codes.Add(await SharedFailureLimitTests.Register(guesser, "guesser", $"ept_abc{i}.wrong"));
            }
        }

        await using var after = await TestServer.StartAsync(output, o => o.ClientFailureLimit = 5, dataDirectory: folder.Path, timeProvider: clock);
        await using var again = await SharedFailureLimitTests.Connect(after, "guesser");
        var afterRestart = await SharedFailureLimitTests.Register(again, "guesser", "ept_abc6.wrong");
        clock.Advance(TimeSpan.FromSeconds(12));
        var tokenBack = await SharedFailureLimitTests.Register(again, "guesser", "ept_abc7.wrong");
        var emptyAgain = await SharedFailureLimitTests.Register(again, "guesser", "ept_abc8.wrong");

        Assert.Equal([.. Enumerable.Repeat(ErrorCodes.Unauthorized, 5), ErrorCodes.RateLimited], codes);
        Assert.Equal(ErrorCodes.RateLimited, afterRestart);
        Assert.Equal(ErrorCodes.Unauthorized, tokenBack);
        Assert.Equal(ErrorCodes.RateLimited, emptyAgain);
    }

    [Fact]
    public async Task ValidRegistrations_MakeNoCallToTheFailureCounters_WhileWrongOnesRecordEach()
    {
        using var folder = new TempDirectory("enroll-counters");
        var calls = new ConcurrentQueue<string>();
        await using var host = await EnrollServerHost.StartAsync(new EnrollServerOptions { DataDirectory = folder.Path, MqttPort = 0, HttpPort = 0, Bind = "127.0.0.1" }, server =>
        {
            server.Logging.ClearProviders().AddProvider(new XunitLoggerProvider(output, "server/")).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning);
            RegistryDecorators.Decorate(server.Services, store => CountingRegistry.Wrap(store, calls));
        });
        var registry = host.Services.GetRequiredService<IRegistry>();
        var token = await host.Services.GetRequiredService<ProvisioningTokens.ProvisioningTokenService>().CreateAsync("acme", autoApprove: true, null, null, null, null, CancellationToken.None);
        calls.Clear();

        await using (var device = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "valid"))
        {
            await device.SubscribeAsync(EnrollTopics.ClientResponses("valid"));
            for (var i = 0; i < 3; i++)
            {
                await device.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"valid","provisioning_token":"{{token.Secret}}"}""", EnrollTopics.ClientResponses("valid"));
                using var answer = JsonDocument.Parse(RawMqttClient.Text(await device.ReceiveAsync(TimeSpan.FromSeconds(30))));
                Assert.False(answer.RootElement.TryGetProperty("error", out _), answer.RootElement.GetRawText());
            }
        }

        var validCalls = calls.ToArray();
        await using (var guesser = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "guesser"))
        {
            await guesser.SubscribeAsync(EnrollTopics.ClientResponses("guesser"));
            await guesser.PublishAsync(EnrollTopics.Register, """{"client_id":"guesser","provisioning_token":"ept_abc.wrong"}""", EnrollTopics.ClientResponses("guesser"));
            await guesser.ReceiveAsync(TimeSpan.FromSeconds(30));
        }

        Assert.NotEmpty(validCalls);
        Assert.DoesNotContain(validCalls, c => c.Contains("CredentialFailure", StringComparison.Ordinal));
        // The wrong token: one failure recorded for the client and one for the source address.
        Assert.Equal(2, calls.Count(c => c == nameof(IRegistry.RecordCredentialFailureAsync)));
        Assert.NotNull(await registry.FindCredentialFailuresAsync("client:guesser", DateTimeOffset.UtcNow));
    }

    [Fact]
    public async Task WhenTheRegistryCannotRecordFailures_TheInstanceStillLimits_ValidDevicesStillRegister_AndItLogsOnce()
    {
        using var folder = new TempDirectory("enroll-counters-down");
        var log = new CountingLoggerProvider();
        await using var host = await EnrollServerHost.StartAsync(new EnrollServerOptions { DataDirectory = folder.Path, MqttPort = 0, HttpPort = 0, Bind = "127.0.0.1", ClientFailureLimit = 5 }, server =>
        {
            server.Logging.ClearProviders().AddProvider(log).AddProvider(new XunitLoggerProvider(output, "server/")).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning);
            RegistryDecorators.Decorate(server.Services, UnrecordingRegistry.Wrap);
        });
        var token = await host.Services.GetRequiredService<ProvisioningTokens.ProvisioningTokenService>().CreateAsync("acme", autoApprove: true, null, null, null, null, CancellationToken.None);
        await using var guesser = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "guesser");
        await guesser.SubscribeAsync(EnrollTopics.ClientResponses("guesser"));

        var codes = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            codes.Add(await SharedFailureLimitTests.Register(guesser, "guesser", $"ept_abc{i}.wrong"));
        }

        await using var device = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "valid");
        await device.SubscribeAsync(EnrollTopics.ClientResponses("valid"));
        var valid = await SharedFailureLimitTests.Register(device, "valid", token.Secret);

        Assert.Equal([.. Enumerable.Repeat(ErrorCodes.Unauthorized, 5), .. Enumerable.Repeat(ErrorCodes.RateLimited, 3)], codes);
        Assert.Equal("registered", valid);
        // Ten failed records (client and source, five times) within the interval: one line, two on a slow machine.
        Assert.InRange(log.Count(1720), 1, 2);
    }

    [Fact]
    public async Task TheSweep_DeletesTheCountersThatAreFullAgain_AndKeepsTheOthers()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(output, o => o.ClientFailureLimit = 5, timeProvider: clock);
        var registry = server.Host.Services.GetRequiredService<IRegistry>();
        await using var guesser = await SharedFailureLimitTests.Connect(server, "guesser");
        Assert.Equal(ErrorCodes.Unauthorized, await SharedFailureLimitTests.Register(guesser, "guesser", "ept_abc.wrong"));
        var fullAt = (await registry.FindCredentialFailuresAsync("client:guesser", clock.GetUtcNow()))!.FullAt;
        await registry.RecordCredentialFailureAsync("client:later", 1, TimeSpan.FromHours(1), clock.GetUtcNow());

        // The sweep runs once a minute; by then the guesser's one failure (12 s) has come back, the other (1 h) has not.
        var swept = await clock.AdvanceUntilAsync(
            TimeSpan.FromMinutes(1),
            Eventually.ReturnsAsync(() => registry.FindCredentialFailuresAsync("client:guesser", fullAt - TimeSpan.FromMilliseconds(1)), f => f is null, TimeSpan.FromSeconds(30), "the guesser's counter swept"));

        Assert.Null(swept);
        Assert.NotNull(await registry.FindCredentialFailuresAsync("client:later", clock.GetUtcNow()));
    }
}

/// <summary>A registry whose failure counters cannot be written (the database is down for them); everything else works.</summary>
public class UnrecordingRegistry : DispatchProxy
{
    private IRegistry _inner = null!;

    internal static IRegistry Wrap(IRegistry inner)
    {
        var proxy = Create<IRegistry, UnrecordingRegistry>();
        ((UnrecordingRegistry)(object)proxy)._inner = inner;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(targetMethod);
        return targetMethod.Name == nameof(IRegistry.RecordCredentialFailureAsync)
            ? Task.FromException<CredentialFailures>(new IOException("the database is unreachable"))
            : RegistryDecorators.Forward(_inner, targetMethod, args);
    }
}
