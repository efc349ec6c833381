using Enroll.Protocol;
using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using Enroll.Server.Commands;
using Enroll.Server.Domain;
using Enroll.Server.Registry;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/devices/{device_id}/commands/result</c> (SPEC §2.6): records the device's result for one of its
/// commands and answers the recorded state. A second result for a finished command answers the state it finished in; a
/// command of another device is answered exactly as an unknown one (not found), so a device learns nothing of others'.
/// </summary>
internal sealed class CommandResultHandler(IDeviceStore devices, CommandService commands) : IRequestHandler<CommandResultRequest, CommandResultResponse>
{
    public async Task<CommandResultResponse> HandleAsync(CommandResultRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(request.CommandId))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "command_id is required");
        }

        if (request.Status is null || !CommandStatuses.Results.Contains(request.Status))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"status must be one of {string.Join(", ", CommandStatuses.Results)}");
        }

        if ((CommandLimits.CheckPayload(request.Payload, "the result payload") ?? CommandLimits.CheckMessage(request.Message)) is { } refusal)
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, refusal);
        }

        var device = await DeviceScope.RequireActiveAsync(devices, context, cancellationToken).ConfigureAwait(false);
        var outcome = await commands.RecordResultAsync(request.CommandId, device.DeviceId, request.Status, request.Payload?.ToJsonString(), request.Message, cancellationToken).ConfigureAwait(false);
        return outcome.Command is { } command
            ? new CommandResultResponse { CommandId = command.CommandId, State = command.State, RequestId = request.RequestId }
            : throw new RejectedException(ErrorCodes.NotFound, $"device '{device.DeviceId}' has no command '{request.CommandId}'");
    }
}
