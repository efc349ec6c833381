using System.Text;
using System.Text.Json;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Commands;

/// <summary>
/// A device spoken for by a <see cref="RawMqttClient"/>: registered through the real device library, then connected raw,
/// subscribed to its commands and responses, answering by hand as the wire protocol says.
/// </summary>
internal sealed class CommandDevice : IAsyncDisposable
{
    private readonly RawMqttClient _client;
    private readonly List<MqttApplicationMessage> _unread = [];
    private int _requests;

    private CommandDevice(RawMqttClient client, string deviceId, string accessToken)
    {
        _client = client;
        DeviceId = deviceId;
        AccessToken = accessToken;
    }

    public string DeviceId { get; }

    public string AccessToken { get; }

    public RawMqttClient Client => _client;

    /// <summary>Registers <paramref name="clientId"/> on <paramref name="server"/> and returns its Device ID and access token, without connecting.</summary>
    public static async Task<(string DeviceId, string AccessToken)> RegisterAsync(TestServer server, TempDirectory states, string clientId, ITestOutputHelper output)
    {
        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(server.MqttEndpoint, clientId, states.Combine(clientId), token.Token, output);
        var identity = await device.Registration.StartAsync();
        var stored = await device.Store.LoadAsync();
        return (identity.DeviceId, stored!.AccessToken!);
    }

    /// <summary>Connects a registered device to <paramref name="broker"/> and subscribes to its commands and responses.</summary>
    public static async Task<CommandDevice> ConnectAsync(Uri broker, string clientId, (string DeviceId, string AccessToken) identity)
    {
        var client = await RawMqttClient.ConnectAsync(broker, clientId, identity.DeviceId, identity.AccessToken);
        await client.SubscribeAsync(EnrollTopics.DeviceCommands(identity.DeviceId));
        await client.SubscribeAsync(EnrollTopics.DeviceResponses(identity.DeviceId));
        return new CommandDevice(client, identity.DeviceId, identity.AccessToken);
    }

    /// <summary>The next command published to the device (its JSON).</summary>
    public Task<JsonElement> NextCommandAsync() => NextOnAsync(EnrollTopics.DeviceCommands(DeviceId));

    /// <summary>True when a command arrives within <paramref name="window"/>.</summary>
    public async Task<bool> GetsACommandWithinAsync(TimeSpan window)
    {
        try
        {
            await NextOnAsync(EnrollTopics.DeviceCommands(DeviceId), window);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Sends a device-scoped request (<c>enroll/v1/devices/{d}/{path}</c>) for <paramref name="deviceId"/> (its own unless given) and returns the answer.</summary>
    public async Task<JsonElement> RequestAsync(string path, string json, string? deviceId = null)
    {
        var correlation = Encoding.UTF8.GetBytes($"req-{Interlocked.Increment(ref _requests)}");
        await _client.PublishAsync($"enroll/v1/devices/{deviceId ?? DeviceId}/{path}", json, EnrollTopics.DeviceResponses(DeviceId), correlation);
        while (true)
        {
            var message = await NextMessageOnAsync(EnrollTopics.DeviceResponses(DeviceId), TimeSpan.FromSeconds(10));
            if (message.CorrelationData is { } data && data.AsSpan().SequenceEqual(correlation))
            {
                return Parse(message);
            }
        }
    }

    public Task<JsonElement> AnswerAsync(string commandId, string status, string? payloadJson = null, string? message = null) =>
        RequestAsync("commands/result", JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["command_id"] = commandId,
            ["status"] = status,
            ["payload"] = payloadJson is null ? null : JsonDocument.Parse(payloadJson).RootElement,
            ["message"] = message,
        }.Where(p => p.Value is not null).ToDictionary(p => p.Key, p => p.Value)));

    public ValueTask DisposeAsync() => _client.DisposeAsync();

    private async Task<JsonElement> NextOnAsync(string topic, TimeSpan? timeout = null) => Parse(await NextMessageOnAsync(topic, timeout ?? TimeSpan.FromSeconds(10)));

    private async Task<MqttApplicationMessage> NextMessageOnAsync(string topic, TimeSpan timeout)
    {
        // Messages on the other topic wait their turn rather than being lost.
        var index = _unread.FindIndex(m => m.Topic == topic);
        if (index >= 0)
        {
            var waiting = _unread[index];
            _unread.RemoveAt(index);
            return waiting;
        }

        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"nothing on {topic} within {timeout}");
            }

            var message = await _client.ReceiveAsync(left);
            if (message.Topic == topic)
            {
                return message;
            }

            _unread.Add(message);
        }
    }

    private static JsonElement Parse(MqttApplicationMessage message) => JsonDocument.Parse(RawMqttClient.Text(message)).RootElement.Clone();
}
