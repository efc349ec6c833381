namespace Enroll.Protocol.Messages;

/// <summary>The <c>error</c> object of a failed request.</summary>
/// <param name="Code">One of <see cref="ErrorCodes"/>.</param>
/// <param name="Message">A human-readable explanation; never contains secrets.</param>
public sealed record ErrorBody(string Code, string Message)
{
    /// <summary>For transient errors: how long the device should wait before trying again.</summary>
    public int? RetryAfterSeconds { get; init; }
}
