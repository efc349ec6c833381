using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Transfers;
using Enroll.Server.Domain;
using Enroll.Server.Registry;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/devices/{device_id}/transfers/status</c> (SPEC §2.7): what the server holds of one of the device's
/// transfers — the chunks it has as ranges, or that it is complete, refused (and why) or unknown — so a device that
/// reconnects or restarts sends only what is missing.
/// </summary>
internal sealed class TransferStatusHandler(IDeviceStore devices, IFileStore files) : IRequestHandler<TransferStatusRequest, TransferStatusResponse>
{
    public async Task<TransferStatusResponse> HandleAsync(TransferStatusRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (!EnrollIdentifiers.IsValid(request.TransferId))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"transfer_id is required and must be {EnrollIdentifiers.Rule}");
        }

        var device = await DeviceScope.RequireActiveAsync(devices, context, cancellationToken).ConfigureAwait(false);
        var transfer = await files.GetTransferAsync(device.DeviceId, request.TransferId!, cancellationToken).ConfigureAwait(false);
        if (transfer is null)
        {
            return new TransferStatusResponse { TransferId = request.TransferId, State = TransferStates.Unknown, Received = [], RequestId = request.RequestId };
        }

        IReadOnlyList<int[]> received = transfer.State switch
        {
            TransferStates.Complete => [[0, transfer.ChunkCount - 1]],
            TransferStates.Receiving => Ranges(await files.ReceivedChunksAsync(device.DeviceId, transfer.TransferId, cancellationToken).ConfigureAwait(false)),
            _ => [],
        };
        return new TransferStatusResponse
        {
            TransferId = transfer.TransferId,
            State = transfer.State,
            ChunkCount = transfer.ChunkCount,
            Received = received,
            Reason = transfer.Reason,
            FileId = transfer.FileId,
            RequestId = request.RequestId,
        };
    }

    /// <summary>Ascending indexes as <c>[first, last]</c> ranges.</summary>
    internal static IReadOnlyList<int[]> Ranges(IReadOnlyList<int> indexes)
    {
        var ranges = new List<int[]>();
        foreach (var index in indexes)
        {
            if (ranges.Count > 0 && ranges[^1][1] == index - 1)
            {
                ranges[^1][1] = index;
            }
            else if (ranges.Count == 0 || ranges[^1][1] < index)
            {
                ranges.Add([index, index]);
            }
        }

        return ranges;
    }
}
