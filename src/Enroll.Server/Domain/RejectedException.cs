using Enroll.Protocol;

namespace Enroll.Server.Domain;

/// <summary>
/// A request the domain refuses: a code of <see cref="ErrorCodes"/>, a message for the device (never a secret) and, for
/// transient refusals, how long to wait. Thrown by domain services and handlers; only the request dispatcher turns it
/// into a wire <c>error</c>.
/// </summary>
internal sealed class RejectedException : Exception
{
    public RejectedException(string code, string message, int? retryAfterSeconds = null)
        : base(message)
    {
        Code = code;
        RetryAfterSeconds = retryAfterSeconds;
    }

    public RejectedException()
        : this(ErrorCodes.Internal, "internal error")
    {
    }

    public RejectedException(string message)
        : this(ErrorCodes.Internal, message)
    {
    }

    public RejectedException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = ErrorCodes.Internal;
    }

    public string Code { get; }

    public int? RetryAfterSeconds { get; }

    /// <summary><c>rate_limited</c> after too many failed credential checks, waiting at least a second.</summary>
    public static RejectedException RateLimited(TimeSpan retryAfter) =>
        new(ErrorCodes.RateLimited, "too many failed attempts; wait before trying again", (int)Math.Ceiling(Math.Max(1, retryAfter.TotalSeconds)));

    /// <summary>
    /// Refuses a credential of organisation <paramref name="credentialOrg"/> used for another organisation the request
    /// named (<paramref name="requestedOrg"/>; none named is fine).
    /// </summary>
    public static void ThrowUnlessSameOrg(string? requestedOrg, string credentialOrg)
    {
        if (requestedOrg is not null && !string.Equals(requestedOrg, credentialOrg, StringComparison.Ordinal))
        {
            throw new RejectedException(ErrorCodes.Forbidden, $"the credential does not belong to organisation '{requestedOrg}'");
        }
    }
}
