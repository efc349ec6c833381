using System.Text.Json;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Testing;

namespace Enroll.Server.Tests.Security;

/// <summary>
/// What the access-isolation tests of the device-scoped requests (twin, commands) share, on every broker: the request
/// topics a device has (declared ones, whether or not a handler serves them yet), a well-formed request for each, and
/// the server → device topics.
/// </summary>
internal static class DeviceScopedAccess
{
    /// <summary>Every device-scoped request the protocol declares.</summary>
    public static IReadOnlyList<EnrollRequest> Requests { get; } =
        [.. EnrollRequests.DeviceScoped.Concat([EnrollRequests.CommandsPending, EnrollRequests.CommandResult]).Distinct()];

    /// <summary>A request the server would accept from the device itself, so a refusal is about access, not the payload.</summary>
    public static string ValidPayload(EnrollRequest request) => request.DeviceSuffix switch
    {
        "twin/get" => """{"desired_version":0,"request_id":"iso-get"}""",
        "twin/report" => """{"patch":{"led":"on"},"request_id":"iso-report"}""",
        "commands/pending" => """{"request_id":"iso-pending"}""",
        "commands/result" => """{"command_id":"cmd_01isolation","status":"succeeded","request_id":"iso-result"}""",
        "transfers/status" => """{"transfer_id":"iso-transfer","request_id":"iso-status"}""",
        "status" => """{"outbox":{"pending":1,"pending_bytes":10,"quarantined":0},"request_id":"iso-device-status"}""",
        _ => throw new ArgumentOutOfRangeException(nameof(request), request, "a device-scoped request this helper does not know: add its payload"),
    };

    /// <summary>What the server publishes to a device, which no other device may read.</summary>
    public static IEnumerable<string> ServerToDeviceTopics(string deviceId) =>
        [EnrollTopics.DeviceTwinDesired(deviceId), EnrollTopics.DeviceCommands(deviceId), EnrollTopics.DeviceResponses(deviceId)];

    /// <summary>The reported version from a twin/report answer; fails the test on an error answer.</summary>
    public static long ReportedVersion(string answer)
    {
        using var json = JsonDocument.Parse(answer);
        Assert.False(json.RootElement.TryGetProperty("error", out var error), $"the report was refused: {error}");
        return json.RootElement.GetProperty("reported_version").GetInt64();
    }

    /// <summary>A device's twin/report through <paramref name="client"/>, answered on its own response topic.</summary>
    public static async Task<string> ReportAsync(RawMqttClient client, string deviceId, string patchJson, TimeSpan patience)
    {
        var correlation = Guid.NewGuid().ToByteArray();
        var published = await client.PublishAsync(EnrollRequests.TwinReport.TopicFor(deviceId), $$"""{"patch":{{patchJson}}}""", EnrollTopics.DeviceResponses(deviceId), correlation);
        Assert.True(published.IsSuccess, $"the device's own twin/report was refused: {published.ReasonCode}");
        var answer = await client.ReceiveAsync(patience);
        Assert.Equal(EnrollTopics.DeviceResponses(deviceId), answer.Topic);
        Assert.Equal(correlation, answer.CorrelationData);
        return RawMqttClient.Text(answer);
    }
}
