using Enroll.Protocol;
using Enroll.Server.Domain;
using Enroll.Server.Registry;

namespace Enroll.Server.Handlers;

/// <summary>What every device-scoped request checks first: the device its topic names exists and is not revoked.</summary>
internal static class DeviceScope
{
    public static async Task<DeviceRecord> RequireActiveAsync(IDeviceStore devices, RequestContext context, CancellationToken cancellationToken)
    {
        var deviceId = context.DeviceId;
        var device = await devices.FindDeviceAsync(deviceId, cancellationToken).ConfigureAwait(false)
            ?? throw new RejectedException(ErrorCodes.NotFound, $"there is no device '{deviceId}'");
        return device.Status == DeviceStatuses.Revoked
            ? throw new RejectedException(ErrorCodes.Forbidden, $"device '{deviceId}' is revoked")
            : device;
    }
}
