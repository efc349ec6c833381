using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Extensions.Logging;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Broker;

/// <summary>
/// What the embedded and the external transport share: one request intake with one rate-limit policy (a sender out of
/// failed attempts is answered before its request is queued), and the device sessions the admin API ends on revoke,
/// where the transport can.
/// </summary>
public sealed class TransportConcernTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string ServerPassword = "server-secret-for-tests";
    private readonly TempDirectory _folder = new("enroll-transports");
    private MosquittoBroker? _mosquitto;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_mosquitto is not null)
        {
            await _mosquitto.DisposeAsync();
        }

        _folder.Dispose();
    }

    [Theory]
    [InlineData("embedded")]
    [InlineData("external")]
    public async Task FailingRequests_PastTheLimit_AreAnsweredRateLimitedBeforeTheQueue_EvenWhileTheOnlyHandlerIsBusy(string transport)
    {
        var gate = new RegistryGate();
        var external = transport == "external" ? await MosquittoAsync() : null;
        await using var host = await EnrollServerHost.StartAsync(
            Options(transport, o =>
            {
                o.ExternalBroker = external;
                o.BrokerPassword = external is null ? null : ServerPassword;
                o.ClientFailureLimit = 5;
                o.SourceFailureLimit = 5;
                o.HandlerConcurrency = 1;
            }),
            server =>
            {
                Logging(server);
                RegistryDecorators.Decorate(server.Services, store => GatedRegistry.Wrap(store, gate));
            });
        using var http = await AdminAsync(host);
        var token = await CreateTokenAsync(http);
        await using var guesser = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "guesser");
        await guesser.SubscribeAsync(EnrollTopics.ClientResponses("guesser"));
        // Another address, so that on the embedded broker the guesser's source limit is not the blocker's.
        await using var blocker = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "blocker", localAddress: IPAddress.Parse("127.0.0.2"));
        await blocker.SubscribeAsync(EnrollTopics.ClientResponses("blocker"));

        var codes = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            await guesser.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"guesser","provisioning_token":"ept_abc{{i}}.wrong"}""", EnrollTopics.ClientResponses("guesser"));
            codes.Add(ErrorCode(await guesser.ReceiveAsync()));
        }

        // The only handler now waits in the registry for the blocker's request; a request that reaches the queue waits behind it.
        gate.Close();
        try
        {
            await blocker.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"blocker","provisioning_token":"{{token}}"}""", EnrollTopics.ClientResponses("blocker"));
            await gate.Held.WaitAsync(TimeSpan.FromSeconds(10));
            for (var i = 5; i < 8; i++)
            {
                await guesser.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"guesser","provisioning_token":"ept_abc{{i}}.wrong"}""", EnrollTopics.ClientResponses("guesser"));
                codes.Add(ErrorCode(await guesser.ReceiveAsync(TimeSpan.FromSeconds(5))));
            }
        }
        finally
        {
            gate.Open();
        }

        Assert.Equal(Enumerable.Repeat(ErrorCodes.Unauthorized, 5), codes.Take(5));
        Assert.Equal(Enumerable.Repeat(ErrorCodes.RateLimited, 3), codes.Skip(5));
        Assert.Contains("\"device_id\"", RawMqttClient.Text(await blocker.ReceiveAsync()), StringComparison.Ordinal);
    }

    [Fact]
    public async Task RevokingADevice_OnTheEmbeddedBroker_ReportsItsSessionDisconnected_ThenNotConnected()
    {
        await using var host = await EnrollServerHost.StartAsync(Options("embedded-revoke"), Logging);
        using var http = await AdminAsync(host);
        var (deviceId, accessToken) = await RegisterAsync(host.MqttEndpoint, "online", await CreateTokenAsync(http));
        await using var device = await RawMqttClient.ConnectAsync(host.MqttEndpoint, "online", deviceId, accessToken);

        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        device.Client.DisconnectedAsync += _ =>
        {
            disconnected.TrySetResult();
            return Task.CompletedTask;
        };

        var first = await RevokeAsync(http, deviceId);
        await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var second = await RevokeAsync(http, deviceId);

        Assert.Equal("disconnected", first);
        Assert.Equal("not_connected", second);
    }

    [Fact]
    public async Task RevokingADevice_OnAnExternalBroker_SaysItsSessionCannotBeEnded()
    {
        var external = await MosquittoAsync();
        await using var host = await EnrollServerHost.StartAsync(Options("external-revoke", o =>
        {
            o.ExternalBroker = external;
            o.BrokerPassword = ServerPassword;
        }), Logging);
        using var http = await AdminAsync(host);
        var (deviceId, _) = await RegisterAsync(external, "remote", await CreateTokenAsync(http));

        Assert.Equal("not_supported_by_external_broker", await RevokeAsync(http, deviceId));
        using var device = JsonDocument.Parse(await http.GetStringAsync(new Uri($"/api/devices/{deviceId}", UriKind.Relative)));
        Assert.Equal("revoked", device.RootElement.GetProperty("status").GetString());
        Assert.False(device.RootElement.TryGetProperty("disconnect", out _));
    }

    private async Task<Uri> MosquittoAsync()
    {
        _mosquitto = await MosquittoBroker.StartAsync(
            MosquittoBroker.RepositoryFile("deploy/mosquitto/enroll.acl"),
            new Dictionary<string, string> { ["enroll-server"] = ServerPassword });
        return _mosquitto.Endpoint;
    }

    private EnrollServerOptions Options(string name, Action<EnrollServerOptions>? configure = null)
    {
        var options = new EnrollServerOptions { DataDirectory = _folder.Combine(name), MqttPort = 0, HttpPort = 0 };
        configure?.Invoke(options);
        return options;
    }

    private void Logging(EnrollServerBuilder server) =>
        server.Logging.ClearProviders().AddProvider(new XunitLoggerProvider(output, "server/")).SetMinimumLevel(LogLevel.Debug).AddFilter("Microsoft", LogLevel.Warning);

    private static async Task<HttpClient> AdminAsync(EnrollServerHost host)
    {
        var http = new HttpClient { BaseAddress = host.HttpEndpoint };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(host.AdminKeyPath)).Trim());
        return http;
    }

    private static async Task<string> CreateTokenAsync(HttpClient http)
    {
        using var response = await http.PostAsync(new Uri("/api/tokens", UriKind.Relative), new StringContent("""{"org_id":"test-org","auto_approve":true}""", Encoding.UTF8, "application/json"));
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("token").GetString()!;
    }

    private static async Task<string?> RevokeAsync(HttpClient http, string deviceId)
    {
        using var response = await http.PostAsync(new Uri($"/api/devices/{deviceId}/revoke", UriKind.Relative), null);
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("revoked", json.RootElement.GetProperty("status").GetString());
        return json.RootElement.GetProperty("disconnect").GetString();
    }

    private async Task<(string DeviceId, string AccessToken)> RegisterAsync(Uri broker, string clientId, string token)
    {
        await using var device = DeviceHarness.Create(broker, clientId, _folder.Combine("state-" + clientId), token, output);
        var identity = await device.Registration.StartAsync();
        var stored = await device.Store.LoadAsync();
        return (identity.DeviceId, stored!.AccessToken!);
    }

    private static string ErrorCode(MqttApplicationMessage message)
    {
        using var json = JsonDocument.Parse(RawMqttClient.Text(message));
        return json.RootElement.GetProperty("error").GetProperty("code").GetString()!;
    }
}
