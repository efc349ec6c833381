using Enroll.Protocol;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Messages;
using Enroll.Server.Domain;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/devices/{device_id}/status</c>: stores the device's report of its outbox as its latest (one row per
/// device, the newest kept), for the console and the fleet overview. The topic names the device, and the broker lets only
/// that device publish there, so a device reports only for itself; a body that does not add up is refused as
/// <c>invalid_request</c> (counted with the other refused requests).
/// </summary>
internal sealed partial class DeviceStatusHandler(IDeviceStore devices, IDeviceStatusStore statuses, ILogger<DeviceStatusHandler> logger) : IRequestHandler<DeviceStatusRequest, DeviceStatusResponse>
{
    public async Task<DeviceStatusResponse> HandleAsync(DeviceStatusRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (request.Outbox is not { } outbox)
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "outbox is required");
        }

        if (outbox.Check() is { } refusal)
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, refusal);
        }

        var device = await DeviceScope.RequireActiveAsync(devices, context, cancellationToken).ConfigureAwait(false);
        var report = new DeviceOutboxInfo
        {
            DeviceId = device.DeviceId,
            ReportedAt = context.ReceivedAt,
            Pending = outbox.Pending!.Value,
            PendingBytes = outbox.PendingBytes!.Value,
            OldestAgeSeconds = outbox.Pending > 0 ? outbox.OldestAgeSeconds : null,
            Quarantined = outbox.Quarantined!.Value,
        };
        var stored = await statuses.SaveDeviceStatusAsync(report, cancellationToken).ConfigureAwait(false);
        LogReported(logger, device.DeviceId, report.Pending, report.PendingBytes, report.Quarantined, stored);
        return new DeviceStatusResponse { ReceivedAt = context.ReceivedAt, RequestId = request.RequestId };
    }

    [LoggerMessage(EventId = 2120, Level = LogLevel.Debug, Message = "Device {DeviceId} reported its outbox: {Pending} pending ({Bytes} bytes), {Quarantined} quarantined (stored: {Stored})")]
    private static partial void LogReported(ILogger logger, string deviceId, long pending, long bytes, long quarantined, bool stored);
}
