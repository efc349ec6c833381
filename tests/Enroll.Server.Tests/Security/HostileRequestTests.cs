using System.Text;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

/// <summary>Each kind of bad request named in the security model gets an <c>invalid_request</c> answer and is counted.</summary>
public sealed class HostileRequestTests(ITestOutputHelper output)
{
    public static TheoryData<string, byte[]> BadRequests() => new()
    {
        { "larger than 65536 bytes", Encoding.UTF8.GetBytes($$"""{"client_id":"hostile-1","provisioning_token":"{{new string('x', 70_000)}}"}""") },
        { "nested deeper than 16", Encoding.UTF8.GetBytes("""{"client_id":"hostile-1","metadata":""" + string.Concat(Enumerable.Repeat("{\"a\":", 40)) + "1" + new string('}', 40) + "}") },
        { "wrong type at $.provisioning_token", Encoding.UTF8.GetBytes("""{"client_id":"hostile-1","provisioning_token":42}""") },
        { "not valid UTF-8", [.. Encoding.UTF8.GetBytes("{\"client_id\":\"hostile-1\",\"provisioning_token\":\""), 0xC3, 0x28, 0xFF, 0x22, 0x7D] },
        { "malformed JSON", Encoding.UTF8.GetBytes("""{"client_id":"hostile-1",""") },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadRequest_GetsInvalidRequest_AndIsCounted(string expected, byte[] payload)
    {
        await using var server = await TestServer.StartAsync(output);
        using var rejected = new RejectedRequests(server);

        await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "hostile-1");
        await client.SubscribeAsync(EnrollTopics.ClientResponses("hostile-1"));
        await client.PublishAsync(EnrollTopics.Register, payload, EnrollTopics.ClientResponses("hostile-1"), [1, 2, 3]);
        using var answer = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(TimeSpan.FromSeconds(10))));

        var error = answer.RootElement.GetProperty("error");
        Assert.Equal(ErrorCodes.InvalidRequest, error.GetProperty("code").GetString());
        Assert.Contains(expected, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(1, rejected[ErrorCodes.InvalidRequest]);
        Assert.Empty(await server.ListDevicesAsync());

        // The server keeps serving: a good request from the same client is answered.
        var token = await server.CreateTokenAsync(autoApprove: true);
        await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"hostile-1","provisioning_token":"{{token.Token}}"}""", EnrollTopics.ClientResponses("hostile-1"), [4]);
        using var registered = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(TimeSpan.FromSeconds(10))));
        Assert.StartsWith("dev_", registered.RootElement.GetProperty("device_id").GetString(), StringComparison.Ordinal);
    }
}
