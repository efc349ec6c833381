using Enroll.Protocol.Messages;
using Enroll.Server.Commands;
using Enroll.Server.Registry;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/devices/{device_id}/commands/pending</c> (SPEC §2.6): publishes each of the device's queued or
/// sent commands that has not expired, oldest first, on its commands topic at QoS 1 (marking the queued ones sent), then
/// answers how many. A command already sent is sent again: the device runs a command ID once.
/// </summary>
internal sealed class CommandsPendingHandler(IDeviceStore devices, ICommandStore commands, CommandDelivery delivery, TimeProvider timeProvider) : IRequestHandler<CommandsPendingRequest, CommandsPendingResponse>
{
    public async Task<CommandsPendingResponse> HandleAsync(CommandsPendingRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        var device = await DeviceScope.RequireActiveAsync(devices, context, cancellationToken).ConfigureAwait(false);
        var deliverable = await commands.TakeDeliverableCommandsAsync(device.DeviceId, timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        foreach (var command in deliverable)
        {
            await delivery.PublishAsync(command, cancellationToken).ConfigureAwait(false);
        }

        return new CommandsPendingResponse { Delivered = deliverable.Count, RequestId = request.RequestId };
    }
}
