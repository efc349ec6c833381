using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Server.Domain;
using Enroll.Server.Registry;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/devices/{device_id}/twin/get</c> (SPEC §2.5): the desired patches after the version the device
/// applied, in order, or the whole desired document when the history no longer reaches back (or the device is ahead, its
/// state coming from another database); and the reported state as stored.
/// </summary>
internal sealed class TwinGetHandler(IDeviceStore devices, ITwinStore twins) : IRequestHandler<TwinGetRequest, TwinGetResponse>
{
    public async Task<TwinGetResponse> HandleAsync(TwinGetRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (request.DesiredVersion is < 0)
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "desired_version cannot be negative");
        }

        var device = await DeviceScope.RequireActiveAsync(devices, context, cancellationToken).ConfigureAwait(false);
        var since = await twins.DesiredSinceAsync(device.DeviceId, request.DesiredVersion ?? 0, cancellationToken).ConfigureAwait(false);
        var twin = await twins.GetTwinAsync(device.DeviceId, cancellationToken).ConfigureAwait(false);
        if (since is null || twin is null)
        {
            throw new RejectedException(ErrorCodes.NotFound, $"there is no device '{device.DeviceId}'");
        }

        return new TwinGetResponse
        {
            DesiredVersion = since.Version,
            Patches = since.IsWholeDocument ? null : [.. since.Patches.Select(p => new TwinDesiredPatch { Version = p.Version, Patch = TwinRecord.ParseDocument(p.Patch) })],
            Document = since.IsWholeDocument ? TwinRecord.ParseDocument(since.Document!) : null,
            ReportedVersion = twin.ReportedVersion,
            Reported = twin.ReportedDocument(),
            RequestId = request.RequestId,
        };
    }
}
