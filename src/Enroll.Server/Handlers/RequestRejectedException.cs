namespace Enroll.Server.Handlers;

/// <summary>Thrown by a handler to answer with an <c>error</c>; the dispatcher turns it into the response.</summary>
internal sealed class RequestRejectedException : Exception
{
    public RequestRejectedException(string code, string message, int? retryAfterSeconds = null)
        : base(message)
    {
        Code = code;
        RetryAfterSeconds = retryAfterSeconds;
    }

    public RequestRejectedException()
        : this(Protocol.ErrorCodes.Internal, "internal error")
    {
    }

    public RequestRejectedException(string message)
        : this(Protocol.ErrorCodes.Internal, message)
    {
    }

    public RequestRejectedException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = Protocol.ErrorCodes.Internal;
    }

    public string Code { get; }

    public int? RetryAfterSeconds { get; }
}
