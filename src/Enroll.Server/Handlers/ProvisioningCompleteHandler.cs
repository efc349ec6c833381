using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Server.Domain;
using Enroll.Server.ProvisioningTokens;
using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/provisioning/complete</c>: reports a pending operation's status, or hands an approved
/// operation's Registration Token to the client that started it. The token is minted once; asking again before the device
/// used it returns the same token, never a second one.
/// </summary>
internal sealed class ProvisioningCompleteHandler : IRequestHandler<ProvisioningCompleteRequest, ProvisioningCompleteResponse>
{
    private readonly IOperationStore _operations;
    private readonly IDeviceStore _devices;
    private readonly IProvisioningTokenStore _tokens;
    private readonly TokenIssuer _issuer;
    private readonly ProvisioningTokenService _provisioningTokens;
    private readonly EnrollServerOptions _options;

    public ProvisioningCompleteHandler(IOperationStore operations, IDeviceStore devices, IProvisioningTokenStore tokens, TokenIssuer issuer, ProvisioningTokenService provisioningTokens, IOptions<EnrollServerOptions> options)
    {
        _operations = operations;
        _devices = devices;
        _tokens = tokens;
        _provisioningTokens = provisioningTokens;
        _issuer = issuer;
        _options = options.Value;
    }


    public async Task<ProvisioningCompleteResponse> HandleAsync(ProvisioningCompleteRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(request.OperationId) || request.OperationId.Length > 64)
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "operation_id is required");
        }

        if (string.IsNullOrEmpty(request.ProvisioningToken))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "provisioning_token is required: the token that started the operation");
        }

        // Proof of possession: whoever holds the client ID's topic learns the operation ID, so only the holder of the
        // Provisioning Token that started the operation may collect its Registration Token. Wrong tokens count as failures.
        var (_, token) = await _provisioningTokens.VerifyLimitedAsync(request.ProvisioningToken, request.ClientId!, context.SenderAddress, cancellationToken).ConfigureAwait(false);
        var operation = await _operations.FindOperationAsync(request.OperationId, cancellationToken).ConfigureAwait(false);
        if (operation is null || !string.Equals(operation.ClientId, request.ClientId, StringComparison.Ordinal)
            || token is null || !string.Equals(token.Id, operation.ProvisioningTokenId, StringComparison.Ordinal))
        {
            // Another client's operation, or the wrong token, is reported as unknown: its token goes only to the client that asked.
            throw new RejectedException(ErrorCodes.NotFound, $"no provisioning operation '{request.OperationId}' for this client and token");
        }

        var now = context.ReceivedAt;
        if (operation.Status == OperationStatus.Pending && operation.ExpiresAt <= now)
        {
            await _operations.ExpireOperationsAsync(now, cancellationToken).ConfigureAwait(false);
            operation = operation with { Status = OperationStatus.Expired };
        }

        switch (operation.Status)
        {
            case OperationStatus.Pending:
                return new ProvisioningCompleteResponse
                {
                    OperationId = operation.OperationId,
                    Status = OperationStatus.Pending,
                    RetryAfterSeconds = (int)_options.PendingPollInterval.TotalSeconds,
                    RequestId = request.RequestId,
                };
            case OperationStatus.Rejected:
                throw new RejectedException(ErrorCodes.Rejected, operation.Reason is { Length: > 0 } reason ? $"an operator rejected the operation: {reason}" : "an operator rejected the operation");
            case OperationStatus.Expired:
                throw new RejectedException(ErrorCodes.Expired, "the operation expired before an operator decided; start a new one");
            case OperationStatus.Completed:
                throw new RejectedException(ErrorCodes.Conflict, "the operation is already completed; register with the Registration Token it returned");
        }

        if (operation.RegistrationToken is null)
        {
            var device = await _devices.FindDeviceAsync(operation.DeviceId!, cancellationToken).ConfigureAwait(false)
                ?? throw new RejectedException(ErrorCodes.NotFound, $"device '{operation.DeviceId}' no longer exists");
            var lifetime = (await _tokens.FindProvisioningTokenAsync(operation.ProvisioningTokenId, cancellationToken).ConfigureAwait(false))?.RegistrationTokenLifetime;
            var issued = _issuer.IssueRegistrationToken(device, lifetime);
            operation = await _operations.AttachRegistrationTokenAsync(
                operation.OperationId,
                issued.Token,
                new RegistrationTokenRecord { TokenId = issued.TokenId, DeviceId = device.DeviceId, IssuedAt = issued.IssuedAt, ExpiresAt = issued.ExpiresAt },
                cancellationToken).ConfigureAwait(false);
        }

        return new ProvisioningCompleteResponse
        {
            OperationId = operation.OperationId,
            Status = OperationStatus.Approved,
            DeviceId = operation.DeviceId,
            RegistrationToken = operation.RegistrationToken,
            ExpiresAt = operation.RegistrationTokenExpiresAt,
            RequestId = request.RequestId,
        };
    }
}
