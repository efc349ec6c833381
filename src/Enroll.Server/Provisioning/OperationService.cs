using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Provisioning;

/// <summary>
/// Operator decisions on provisioning operations. Every decision is pushed at once to the device's response topic, so a
/// connected device does not have to poll.
/// </summary>
internal sealed class OperationService
{
    private readonly IOperationStore _registry;
    private readonly IResponsePublisher _publisher;
    private readonly TimeOrderedId _ids;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<OperationService> _logger;
    private readonly Http.ConsoleApi.ConsoleFeed _feed;

    public OperationService(IOperationStore registry, IResponsePublisher publisher, TimeOrderedId ids, TimeProvider timeProvider, ILogger<OperationService> logger, Http.ConsoleApi.ConsoleFeed feed)
    {
        _feed = feed;
        _registry = registry;
        _publisher = publisher;
        _ids = ids;
        _timeProvider = timeProvider;
        _logger = logger;
    }

    public async Task<DecideOperationOutcome> DecideAsync(string operationId, bool approve, string? reason, string decidedBy, bool push, CancellationToken cancellationToken)
    {
        var outcome = await _registry.DecideOperationAsync(operationId, approve, reason, decidedBy, "dev_" + _ids.Next(), _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (outcome.Result != DecideOperationResult.Decided)
        {
            return outcome;
        }

        var operation = outcome.Operation!;
        Log.OperationDecided(_logger, operation.OperationId, operation.Status, decidedBy, operation.DeviceId ?? "-");
        await _feed.AnnounceAsync(Http.ConsoleApi.ConsoleFeed.Operations, operation.OperationId).ConfigureAwait(false);
        if (push)
        {
            await PushAsync(operation, cancellationToken).ConfigureAwait(false);
        }

        return outcome;
    }

    /// <summary>Lists operations, first marking those past their expiry as expired.</summary>
    public async Task<IReadOnlyList<OperationRecord>> ListAsync(string? status, int limit, CancellationToken cancellationToken)
    {
        await _registry.ExpireOperationsAsync(_timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        return await _registry.ListOperationsAsync(status, limit, cancellationToken).ConfigureAwait(false);
    }

    public async Task<OperationRecord?> FindAsync(string operationId, CancellationToken cancellationToken)
    {
        await _registry.ExpireOperationsAsync(_timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        return await _registry.FindOperationAsync(operationId, cancellationToken).ConfigureAwait(false);
    }

    private async Task PushAsync(OperationRecord operation, CancellationToken cancellationToken)
    {
        var status = new ProvisioningCompleteResponse
        {
            OperationId = operation.OperationId,
            Status = operation.Status,
            DeviceId = operation.DeviceId,
            Error = operation.Status == OperationStatus.Rejected
                ? new ErrorBody(ErrorCodes.Rejected, operation.Reason is { Length: > 0 } reason ? $"an operator rejected the operation: {reason}" : "an operator rejected the operation")
                : null,
        };
        var topic = EnrollTopics.ClientResponses(operation.ClientId);
        try
        {
            await _publisher.PublishAsync(topic, JsonSerializer.SerializeToUtf8Bytes(status, EnrollJsonContext.Default.ProvisioningCompleteResponse), null, retain: false, cancellationToken).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the push is a courtesy: a device that misses it polls `complete`
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.PushFailed(_logger, operation.OperationId, topic, ex.Message);
        }
    }
}
