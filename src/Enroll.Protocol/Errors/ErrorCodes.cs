namespace Enroll.Protocol;

/// <summary>
/// The <c>error.code</c> values of protocol v1. Permanent errors stop a device's retries at once; transient ones are
/// retried, honouring <c>retry_after_seconds</c>.
/// </summary>
public static class ErrorCodes
{
    /// <summary>The request could not be read or misses a required field. Permanent.</summary>
    public const string InvalidRequest = "invalid_request";

    /// <summary>The credential is missing, unknown, expired or revoked. Permanent.</summary>
    public const string Unauthorized = "unauthorized";

    /// <summary>The credential is valid but does not allow this request. Permanent.</summary>
    public const string Forbidden = "forbidden";

    /// <summary>
    /// The Provisioning Token is valid but not marked auto-approve: start a provisioning operation on
    /// <c>enroll/v1/provisioning/init</c> instead of registering directly. Permanent for this request.
    /// </summary>
    public const string ApprovalRequired = "approval_required";

    /// <summary>An operator rejected the provisioning operation. Permanent.</summary>
    public const string Rejected = "rejected";

    /// <summary>The provisioning operation expired before it was decided. Permanent.</summary>
    public const string Expired = "expired";

    /// <summary>The referenced device or operation does not exist. Permanent.</summary>
    public const string NotFound = "not_found";

    /// <summary>The request conflicts with existing state, for example a desired Device ID that is taken. Permanent.</summary>
    public const string Conflict = "conflict";

    /// <summary>Too many requests; retry after <c>retry_after_seconds</c>. Transient.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>The server cannot serve the request now; retry after <c>retry_after_seconds</c>. Transient.</summary>
    public const string Unavailable = "unavailable";

    /// <summary>The server failed unexpectedly. Transient.</summary>
    public const string Internal = "internal";

    /// <summary>True when a device should stop retrying after this error.</summary>
    public static bool IsPermanent(string code) =>
        code is InvalidRequest or Unauthorized or Forbidden or Rejected or Expired or NotFound or Conflict or ApprovalRequired;
}
