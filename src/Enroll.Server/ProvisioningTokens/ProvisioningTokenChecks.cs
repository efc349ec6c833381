using Enroll.Protocol;
using Enroll.Server.Domain;

namespace Enroll.Server.ProvisioningTokens;

/// <summary>The refusals a Provisioning Token check leads to, worded once for every request that presents a token.</summary>
internal static class ProvisioningTokenChecks
{
    /// <summary>
    /// Refuses an unknown, revoked or expired token (<c>unauthorized</c>). A used-up token passes: re-provisioning or
    /// re-registering an existing device takes no use, so whether it may go on is the caller's decision.
    /// </summary>
    public static void RejectUnlessUsable(this ProvisioningTokenCheck check)
    {
        switch (check)
        {
            case ProvisioningTokenCheck.Unknown:
                throw new RejectedException(ErrorCodes.Unauthorized, "the provisioning token is not valid");
            case ProvisioningTokenCheck.Revoked:
                throw new RejectedException(ErrorCodes.Unauthorized, "the provisioning token is revoked");
            case ProvisioningTokenCheck.Expired:
                throw new RejectedException(ErrorCodes.Unauthorized, "the provisioning token has expired");
        }
    }
}
