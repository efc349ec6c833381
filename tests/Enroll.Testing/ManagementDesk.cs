using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Server.Broker;
using Enroll.Server.Registry;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Testing;

/// <summary>
/// What an operator does to a device's twin on a test server, through the server's own twin store and broker: patch the
/// desired document (stored at the next version, then pushed to the device's <c>twin/desired</c> topic as the server
/// pushes it), read the twin, prune the desired history.
/// </summary>
public sealed class TwinDesk(TestServer server)
{
    private readonly ITwinStore _twins = server.Host.Services.GetRequiredService<ITwinStore>();
    private readonly EmbeddedBroker _broker = server.Host.Services.GetRequiredService<EmbeddedBroker>();

    /// <summary>Patches the desired document of <paramref name="deviceId"/> and, unless <paramref name="push"/> is false, pushes the patch; returns its version.</summary>
    public async Task<long> PatchDesiredAsync(string deviceId, string patchJson, bool push = true)
    {
        var patch = JsonNode.Parse(patchJson)!.AsObject();
        var outcome = await _twins.PatchDesiredAsync(deviceId, (JsonObject)patch.DeepClone(), null, DateTimeOffset.UtcNow);
        if (outcome.Result != DesiredPatchResult.Applied)
        {
            throw new InvalidOperationException($"the desired patch was not applied: {outcome.Result} {outcome.Reason}");
        }

        if (push)
        {
            await PushAsync(deviceId, new TwinDesiredPatch { Version = outcome.Version, Patch = patch });
        }

        return outcome.Version;
    }

    /// <summary>Publishes <paramref name="patch"/> on the device's desired topic as the server would (whatever its version).</summary>
    public Task PushAsync(string deviceId, TwinDesiredPatch patch) =>
        _broker.PublishAsync(EnrollTopics.DeviceTwinDesired(deviceId), JsonSerializer.SerializeToUtf8Bytes(patch, EnrollJsonContext.Default.TwinDesiredPatch), null, false, CancellationToken.None);

    /// <summary>The twin as the server holds it: desired document and version, reported document and version.</summary>
    public async Task<(JsonObject Desired, long DesiredVersion, JsonObject Reported, long ReportedVersion)> GetAsync(string deviceId)
    {
        var twin = await _twins.GetTwinAsync(deviceId) ?? throw new InvalidOperationException($"no device {deviceId}");
        return (twin.DesiredDocument(), twin.DesiredVersion, twin.ReportedDocument(), twin.ReportedVersion);
    }

    /// <summary>Deletes every desired-history patch but the newest <paramref name="keepPerDevice"/>.</summary>
    public Task<int> PruneHistoryAsync(int keepPerDevice) => _twins.PruneDesiredHistoryAsync(DateTimeOffset.UtcNow.AddMinutes(1), keepPerDevice);
}

/// <summary>
/// Plays the server's command side on a test server's real broker where a test needs what the server never does on its
/// own (the same command delivered again at will, results recorded as the broker saw them): publishes
/// commands to a device's <c>commands</c> topic, answers the device's <c>commands/pending</c> (publishing what was queued
/// for it) and <c>commands/result</c> requests on its response topic, and records every result the device sent.
/// </summary>
public sealed class CommandDesk
{
    private readonly EmbeddedBroker _broker;
    private readonly ConcurrentDictionary<string, ConcurrentQueue<DeviceCommand>> _queued = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<(string DeviceId, CommandResultRequest Result)> _results = new();
    private volatile bool _answerResults = true;

    public CommandDesk(TestServer server)
    {
        ArgumentNullException.ThrowIfNull(server);
        _broker = server.Host.Services.GetRequiredService<EmbeddedBroker>();
        _broker.Server.InterceptingPublishAsync += e =>
        {
            if (e.ClientId == BrokerSession.ServerClientId)
            {
                return Task.CompletedTask;
            }

            var topic = e.ApplicationMessage.Topic;
            var parts = topic.Split('/');
            if (parts.Length < 6 || parts[0] != "enroll" || parts[2] != "devices" || parts[4] != "commands")
            {
                return Task.CompletedTask;
            }

            var deviceId = parts[3];
            var payload = System.Buffers.BuffersExtensions.ToArray(e.ApplicationMessage.Payload);
            var correlation = e.ApplicationMessage.CorrelationData;
            _ = Task.Run(() => parts[5] switch
            {
                "pending" => AnswerPendingAsync(deviceId, payload, correlation),
                "result" => AnswerResultAsync(deviceId, payload, correlation),
                _ => Task.CompletedTask,
            });
            return Task.CompletedTask;
        };
    }

    /// <summary>Every result a device sent, in arrival order (a result sent twice appears twice).</summary>
    public IReadOnlyList<(string DeviceId, CommandResultRequest Result)> Results => [.. _results];

    /// <summary>While false, results are recorded but not acknowledged (the device keeps sending them).</summary>
    public bool AnswerResults
    {
        get => _answerResults;
        set => _answerResults = value;
    }

    /// <summary>Publishes <paramref name="command"/> to the device now (QoS 1, as the server delivers).</summary>
    public Task SendAsync(string deviceId, DeviceCommand command) =>
        _broker.PublishAsync(EnrollTopics.DeviceCommands(deviceId), JsonSerializer.SerializeToUtf8Bytes(command, EnrollJsonContext.Default.DeviceCommand), null, false, CancellationToken.None);

    /// <summary>Queues <paramref name="command"/> to be published when the device asks for its pending commands.</summary>
    public void Queue(string deviceId, DeviceCommand command) => _queued.GetOrAdd(deviceId, _ => new()).Enqueue(command);

    private async Task AnswerPendingAsync(string deviceId, byte[] payload, byte[]? correlation)
    {
        var request = JsonSerializer.Deserialize(payload, EnrollJsonContext.Default.CommandsPendingRequest)!;
        var delivered = 0;
        if (_queued.TryGetValue(deviceId, out var queue))
        {
            while (queue.TryDequeue(out var command))
            {
                await SendAsync(deviceId, command);
                delivered++;
            }
        }

        var answer = new CommandsPendingResponse { Delivered = delivered, RequestId = request.RequestId };
        await _broker.PublishAsync(EnrollTopics.DeviceResponses(deviceId), JsonSerializer.SerializeToUtf8Bytes(answer, EnrollJsonContext.Default.CommandsPendingResponse), correlation, false, CancellationToken.None);
    }

    private async Task AnswerResultAsync(string deviceId, byte[] payload, byte[]? correlation)
    {
        var request = JsonSerializer.Deserialize(payload, EnrollJsonContext.Default.CommandResultRequest)!;
        _results.Enqueue((deviceId, request));
        if (!_answerResults)
        {
            return;
        }

        var answer = new CommandResultResponse { CommandId = request.CommandId, State = request.Status, RequestId = request.RequestId };
        await _broker.PublishAsync(EnrollTopics.DeviceResponses(deviceId), JsonSerializer.SerializeToUtf8Bytes(answer, EnrollJsonContext.Default.CommandResultResponse), correlation, false, CancellationToken.None);
    }
}
