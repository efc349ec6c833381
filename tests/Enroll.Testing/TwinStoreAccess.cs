using System.Text.Json.Nodes;
using Enroll.Server.Registry;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Testing;

/// <summary>
/// A test server's twins read and written in its registry directly (as the twin HTTP API and <c>enroll twin set</c> do
/// once committed), for tests of the device side of the wire that need an operator's desired patches, and to check that a
/// refused request stored nothing.
/// </summary>
public static class TwinStoreAccess
{
    /// <summary>Applies a desired merge patch in the registry (no push to the device) and returns the version it made.</summary>
    public static async Task<long> PatchDesiredInStoreAsync(this TestServer server, string deviceId, string patchJson)
    {
        ArgumentNullException.ThrowIfNull(server);
        var patch = JsonNode.Parse(patchJson) as JsonObject ?? throw new ArgumentException("a desired patch is a JSON object", nameof(patchJson));
        var outcome = await Store(server).PatchDesiredAsync(deviceId, patch, ifVersion: null, DateTimeOffset.UtcNow);
        return outcome.Result == DesiredPatchResult.Applied
            ? outcome.Version
            : throw new InvalidOperationException($"the desired patch was not applied: {outcome.Result} {outcome.Reason}");
    }

    /// <summary>The twin as stored: desired and reported documents as compact JSON with their versions.</summary>
    public static async Task<(string Desired, long DesiredVersion, string Reported, long ReportedVersion)> TwinInStoreAsync(this TestServer server, string deviceId)
    {
        ArgumentNullException.ThrowIfNull(server);
        var twin = await Store(server).GetTwinAsync(deviceId) ?? throw new InvalidOperationException($"there is no device '{deviceId}'");
        return (twin.Desired, twin.DesiredVersion, twin.Reported, twin.ReportedVersion);
    }

    private static ITwinStore Store(TestServer server) => server.Host.Services.GetRequiredService<ITwinStore>();
}

/// <summary>What a test server's embedded broker knows of its clients' subscriptions.</summary>
public static class BrokerSubscriptions
{
    /// <summary>
    /// Waits until client <paramref name="clientId"/> holds a granted subscription to <paramref name="filter"/> — so that a
    /// push the test triggers next reaches it (the embedded broker keeps no session after a client leaves).
    /// </summary>
    public static Task WaitForSubscriptionAsync(this TestServer server, string clientId, string filter, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(server);
        var broker = server.Host.Services.GetRequiredService<Enroll.Server.Broker.EmbeddedBroker>();
        return Eventually.ReturnsAsync(
            async () =>
            {
                try
                {
                    var session = await broker.Server.GetSessionAsync(clientId);
                    return session.Items[Enroll.Server.Broker.BrokerSession.Subscriptions] is System.Collections.Concurrent.ConcurrentDictionary<string, MQTTnet.Protocol.MqttQualityOfServiceLevel> filters
                        && filters.ContainsKey(filter);
                }
                catch (InvalidOperationException)
                {
                    return false; // not connected yet
                }
            },
            subscribed => subscribed,
            timeout,
            $"{clientId} subscribed to {filter}");
    }
}
