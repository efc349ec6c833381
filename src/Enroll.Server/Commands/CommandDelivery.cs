using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Server.Registry;

namespace Enroll.Server.Commands;

/// <summary>
/// Puts commands on the wire: each as a <see cref="DeviceCommand"/> at QoS 1 (not retained) on
/// <see cref="EnrollTopics.DeviceCommands"/>, through the transport's <see cref="IResponsePublisher"/>.
/// <paramref name="hasSession"/> is the embedded broker's view of a device's session (null on an external broker, whose
/// sessions the server cannot see).
/// </summary>
internal sealed class CommandDelivery(IResponsePublisher publisher, Func<DeviceRecord, Task<bool>>? hasSession = null)
{
    /// <summary>Publishes <paramref name="command"/> to its device.</summary>
    public Task PublishAsync(CommandRecord command, CancellationToken cancellationToken)
    {
        var message = new DeviceCommand
        {
            CommandId = command.CommandId,
            Name = command.Name,
            Payload = command.Payload is null ? null : JsonNode.Parse(command.Payload),
            ExpiresAt = command.ExpiresAt,
        };
        var payload = JsonSerializer.SerializeToUtf8Bytes(message, EnrollJsonContext.Default.DeviceCommand);
        return publisher.PublishAsync(EnrollTopics.DeviceCommands(command.DeviceId), payload, null, retain: false, cancellationToken);
    }

    /// <summary>
    /// True when a command published now would reach the device: on the embedded broker, when the device has a session
    /// (connected, or persistent and queueing); on an external broker always (QoS 1 reaches a persistent session, and the
    /// server cannot see the broker's sessions). A device that is not reached gets its commands with commands/pending.
    /// </summary>
    public Task<bool> CanReachAsync(DeviceRecord device) =>
        hasSession is null ? Task.FromResult(true) : hasSession(device);
}
