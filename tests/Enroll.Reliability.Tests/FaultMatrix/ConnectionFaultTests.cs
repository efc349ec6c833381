using Enroll.Protocol.Topics;
using Enroll.Reliability.Tests.Harness;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.FaultMatrix;

// Each fault is its own class so xunit runs them side by side; each takes its own server, ports and folders.

/// <summary>Broker down: every TCP connection is accepted and closed at once. The device was registered before.</summary>
public sealed class BrokerDownTests(ITestOutputHelper output)
{
    [Fact]
    public async Task BrokerDown_AgentBacksOffItsConnects_NamesBrokerUnreachable_AndDeliversEverythingOnceItIsBack()
    {
        await using var server = await TestServer.StartAsync();
        await using var proxy = FaultProxy.ForwardingTo(server.MqttEndpoint);
        await using var run = new FaultRun("broker_down", output);
        await run.RegisterAsync(proxy.Endpoint, (await server.CreateTokenAsync()).Token!);
        proxy.Refuse();
        await run.SendAsync(proxy.Endpoint, 3);

        var agent = await run.StartAgentAsync(proxy.Endpoint);
        var measured = await run.MeasureAsync(agent, () => proxy.Connections);
        proxy.ForwardTo(server.MqttEndpoint);
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(15));

        // Two loops may connect: the publisher's session and registration's token care.
        run.Report(measured, 2 * FaultRun.CeilingPerLoop, lost, "connects", "broker_unreachable");
    }
}

/// <summary>
/// The broker refuses the device's credentials: the issue's reproduction, an external Mosquitto (server in --broker mode)
/// whose password file knows only the server. Registration works (anonymous request connection), the data connection
/// is refused with CONNACK "bad user name or password".
/// </summary>
public sealed class CredentialsRefusedTests(ITestOutputHelper output)
{
    [Fact]
    public async Task BrokerRefusesCredentials_AgentStopsRegisteringInALoop_NamesCredentialsRefused_AndDeliversOnceAccepted()
    {
        const string serverPassword = "server-secret-for-the-matrix";
        // An external Mosquitto without device authentication: its password file knows only the server's user.
        await using var mosquitto = await MosquittoBroker.StartAsync(users: new Dictionary<string, string> { ["enroll-server"] = serverPassword });
        await using var server = await TestServer.StartAsync(configure: o =>
        {
            o.ExternalBroker = mosquitto.Endpoint;
            o.BrokerPassword = serverPassword;
        });
        await using var registrations = await RawMqttClient.ConnectAsync(mosquitto.Endpoint, "matrix-counter");
        var counted = 0;
        registrations.Client.ApplicationMessageReceivedAsync += e =>
        {
            // A registration with the Provisioning Token, or again with the Registration Token (tokens/refresh).
            if (EnrollTopics.IsRequestTopic(e.ApplicationMessage.Topic))
            {
                Interlocked.Increment(ref counted);
            }

            return Task.CompletedTask;
        };
        await registrations.SubscribeAsync("enroll/v1/#");
        await using var run = new FaultRun("credentials_refused", output);
        await run.SendAsync(mosquitto.Endpoint, 3);

        var agent = await run.StartAgentAsync(mosquitto.Endpoint, (await server.CreateTokenAsync()).Token!);
        var measured = await run.MeasureAsync(agent, () => Volatile.Read(ref counted));
        await mosquitto.AcceptEveryoneAsync();
        // Delivered means stored by the server, which takes device messages from the external broker through its
        // persistent ingest session once the broker accepts the device (stronger than "acknowledged by the broker").
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(30));

        // One loop registers; refusals with fresh tokens end in a persistent error state, not more registrations.
        run.Report(measured, FaultRun.CeilingPerLoop, lost, "registrations", "credentials_refused");
    }
}

/// <summary>Server silent: a plain MQTT broker with no Enroll handlers takes the device's requests and never answers.</summary>
public sealed class ServerSilentTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ServerSilent_AgentBacksOffItsRequests_NamesServerSilent_AndRegistersAndDeliversOnceTheServerAnswers()
    {
        await using var server = await TestServer.StartAsync();
        await using var silent = await StandInBroker.StartAsync();
        await using var proxy = FaultProxy.ForwardingTo(silent.Endpoint);
        await using var run = new FaultRun("server_silent", output);
        await run.SendAsync(proxy.Endpoint, 3);

        var agent = await run.StartAgentAsync(proxy.Endpoint, (await server.CreateTokenAsync()).Token!);
        // An attempt shows at the broker as a connect, subscriptions (key set, answers) and the request itself, when the
        // device gets that far: all of them count.
        var measured = await run.MeasureAsync(agent, () => silent.Connections + silent.Subscriptions + silent.Publishes(t => t.StartsWith(EnrollTopics.Root, StringComparison.Ordinal) && !t.Contains("/messages/", StringComparison.Ordinal)));
        proxy.ForwardTo(server.MqttEndpoint);
        var lost = await run.CountLostAsync(server, TimeSpan.FromSeconds(20));

        // Each request waits its 1 s attempt timeout; the agent's registration loop is the one loop that sends them, and
        // one attempt costs at most four packets (connect, two subscriptions, the request).
        run.Report(measured, 4 * FaultRun.CeilingPerLoop, lost, "connects+subscribes+requests", "server_silent");
    }
}
