using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Server.Domain;
using Enroll.Server.Registry;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/devices/{device_id}/twin/report</c> (SPEC §2.5): merges the patch into the reported document and
/// answers after the commit; a patch over the twin limits is refused with the reason and changes nothing.
/// </summary>
internal sealed class TwinReportHandler(IDeviceStore devices, ITwinStore twins, TimeProvider timeProvider, Http.ConsoleApi.ConsoleFeed feed) : IRequestHandler<TwinReportRequest, TwinReportResponse>
{
    public async Task<TwinReportResponse> HandleAsync(TwinReportRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (request.Patch is null)
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "patch is required (a JSON object, RFC 7396 merge patch)");
        }

        var device = await DeviceScope.RequireActiveAsync(devices, context, cancellationToken).ConfigureAwait(false);
        var outcome = await twins.PatchReportedAsync(device.DeviceId, request.Patch, timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (outcome.Result == ReportedPatchResult.Applied)
        {
            await feed.AnnounceAsync(Http.ConsoleApi.ConsoleFeed.Twins, device.DeviceId).ConfigureAwait(false);
        }

        return outcome.Result switch
        {
            ReportedPatchResult.Applied => new TwinReportResponse { ReportedVersion = outcome.Version, RequestId = request.RequestId },
            ReportedPatchResult.Refused => throw new RejectedException(ErrorCodes.InvalidRequest, $"the reported patch was refused: {outcome.Reason}"),
            _ => throw new RejectedException(ErrorCodes.NotFound, $"there is no device '{device.DeviceId}'"),
        };
    }
}
