using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Server.Domain;
using Enroll.Server.Diagnostics;
using Enroll.Server.Provisioning;
using Enroll.Server.ProvisioningTokens;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/provisioning/init</c> (SPEC §2.2): checks the Provisioning Token and opens a provisioning
/// operation, approved at once when the token is auto-approve. A client that already has a device gets an operation that
/// re-provisions that Device ID; re-provisioning a revoked device always waits for an operator.
/// </summary>
internal sealed class ProvisioningInitHandler : IRequestHandler<ProvisioningInitRequest, ProvisioningInitResponse>
{
    private readonly IDeviceStore _devices;
    private readonly IOperationStore _operationStore;
    private readonly ProvisioningTokenService _provisioningTokens;
    private readonly OperationService _operations;
    private readonly TimeOrderedId _ids;
    private readonly EnrollServerOptions _options;
    private readonly ILogger<ProvisioningInitHandler> _logger;
    private readonly Http.ConsoleApi.ConsoleFeed _feed;

    public ProvisioningInitHandler(IDeviceStore devices, IOperationStore operationStore, ProvisioningTokenService provisioningTokens, OperationService operations, TimeOrderedId ids, IOptions<EnrollServerOptions> options, ILogger<ProvisioningInitHandler> logger, Http.ConsoleApi.ConsoleFeed feed)
    {
        _feed = feed;
        _devices = devices;
        _operationStore = operationStore;
        _provisioningTokens = provisioningTokens;
        _operations = operations;
        _ids = ids;
        _options = options.Value;
        _logger = logger;
    }


    public async Task<ProvisioningInitResponse> HandleAsync(ProvisioningInitRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        var clientId = request.ClientId!;
        if (string.IsNullOrEmpty(request.ProvisioningToken))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "provisioning_token is required");
        }

        if (request.DesiredDeviceId is not null && !EnrollIdentifiers.IsValid(request.DesiredDeviceId))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"desired_device_id must be {EnrollIdentifiers.Rule}");
        }

        if (request.DesiredDeviceId is not null && string.Equals(request.DesiredDeviceId, _options.BrokerUsername, StringComparison.OrdinalIgnoreCase))
        {
            // The server's own user on an external broker must never be a device's user name too.
            throw new RejectedException(ErrorCodes.Conflict, $"the Device ID '{request.DesiredDeviceId}' is reserved");
        }

        if (request.OrgId is not null && !EnrollIdentifiers.IsValid(request.OrgId))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"org_id must be {EnrollIdentifiers.Rule}");
        }

        if (request.DeviceName is { Length: > RegistrationHandler.MaxNameLength } || request.Metadata is { Count: > RegistrationHandler.MaxMetadataEntries })
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"device_name is limited to {RegistrationHandler.MaxNameLength} characters and metadata to {RegistrationHandler.MaxMetadataEntries} entries");
        }

        var (check, token) = await _provisioningTokens.VerifyLimitedAsync(request.ProvisioningToken, clientId, context.SenderAddress, cancellationToken).ConfigureAwait(false);
        var existing = token is null ? null : await _devices.FindDeviceByClientAsync(token.OrgId, clientId, cancellationToken).ConfigureAwait(false);
        check.RejectUnlessUsable();
        if (check == ProvisioningTokenCheck.UsedUp && existing is null)
        {
            throw new RejectedException(ErrorCodes.Unauthorized, "the provisioning token has no uses left");
        }

        RejectedException.ThrowUnlessSameOrg(request.OrgId, token!.OrgId);
        var now = context.ReceivedAt;

        // A device restarted while pending, or a duplicate request, gets the operation it already has.
        var pending = await _operationStore.FindPendingOperationAsync(token.OrgId, clientId, now, cancellationToken).ConfigureAwait(false);
        if (pending is not null)
        {
            return Answer(pending, request.RequestId);
        }

        if (existing is not null && request.DesiredDeviceId is not null && request.DesiredDeviceId != existing.DeviceId)
        {
            throw new RejectedException(ErrorCodes.Conflict, $"client '{clientId}' already has device '{existing.DeviceId}'; ask for that Device ID or none");
        }

        if (existing is null && request.DesiredDeviceId is { } desired && await _devices.FindDeviceAsync(desired, cancellationToken).ConfigureAwait(false) is not null)
        {
            throw new RejectedException(ErrorCodes.Conflict, $"the Device ID '{desired}' is taken by another device");
        }

        var operation = new OperationRecord
        {
            OperationId = "op_" + _ids.Next(),
            OrgId = token.OrgId,
            ClientId = clientId,
            ProvisioningTokenId = token.Id,
            DesiredDeviceId = existing is null ? request.DesiredDeviceId : null,
            ReprovisionOf = existing?.DeviceId,
            DeviceName = request.DeviceName,
            MetadataJson = request.Metadata is null ? null : JsonSerializer.Serialize(request.Metadata, RegistryJsonContext.Default.DictionaryStringJsonElement),
            Status = OperationStatus.Pending,
            CreatedAt = now,
            ExpiresAt = now + _options.OperationLifetime,
        };
        await _operationStore.CreateOperationAsync(operation, cancellationToken).ConfigureAwait(false);
        var detail = existing is null ? string.Empty : $" (re-provisioning of {existing.DeviceId})";
        Log.OperationStarted(_logger, operation.OperationId, clientId, token.OrgId, OperationStatus.Pending, detail);
        await _feed.AnnounceAsync(Http.ConsoleApi.ConsoleFeed.Operations, operation.OperationId).ConfigureAwait(false);

        // Auto-approve tokens skip the operator, except to bring back a device an operator revoked.
        if (token.AutoApprove && existing is not { IsActive: false })
        {
            var decided = await _operations.DecideAsync(operation.OperationId, approve: true, reason: null, decidedBy: "auto-approve", push: false, cancellationToken).ConfigureAwait(false);
            if (decided.Result == DecideOperationResult.Decided)
            {
                operation = decided.Operation!;
            }
        }

        return Answer(operation, request.RequestId);
    }

    private ProvisioningInitResponse Answer(OperationRecord operation, string? requestId) => new()
    {
        OperationId = operation.OperationId,
        Status = operation.Status,
        ExpiresAt = operation.ExpiresAt,
        RetryAfterSeconds = operation.Status == OperationStatus.Pending ? (int)_options.PendingPollInterval.TotalSeconds : null,
        RequestId = requestId,
    };
}
