using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Server.Domain;
using Enroll.Server.Diagnostics;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/tokens/refresh</c> (SPEC §2.3): exchanges a current Registration Token for a new one with the
/// same lifetime. The old token may be used once more within the grace window; any later use revokes the device's tokens.
/// </summary>
internal sealed class TokenRefreshHandler(RegistrationTokenService registrationTokens, ILogger<TokenRefreshHandler> logger)
    : IRequestHandler<TokenRefreshRequest, TokenRefreshResponse>
{

    public async Task<TokenRefreshResponse> HandleAsync(TokenRefreshRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(request.RegistrationToken))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "registration_token is required");
        }

        var holder = await registrationTokens.AuthenticateAsync(request.RegistrationToken, request.DeviceId, request.ClientId!, context.SenderAddress, cancellationToken).ConfigureAwait(false);
        var issued = await registrationTokens.RefreshAsync(holder, cancellationToken).ConfigureAwait(false);
        Log.RegistrationTokenRefreshed(logger, holder.Device.DeviceId);
        return new TokenRefreshResponse
        {
            DeviceId = holder.Device.DeviceId,
            RegistrationToken = issued.Token,
            ExpiresAt = issued.ExpiresAt,
            RequestId = request.RequestId,
        };
    }
}
