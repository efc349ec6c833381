using System.Text.Json;
using System.Threading.Channels;
using Enroll.Protocol;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Handlers;

/// <summary>
/// The bounded queue between the broker (which receives requests) and the dispatcher's workers. When it is full, the
/// broker answers at once with <see cref="OverloadedAnswer"/> instead of queueing without limit.
/// </summary>
internal sealed class RequestQueue
{
    /// <summary>Seconds a device is asked to wait when the server is overloaded.</summary>
    public const int OverloadedRetryAfterSeconds = 5;

    private readonly Channel<IncomingRequest> _channel;

    public RequestQueue(IOptions<EnrollServerOptions> options)
    {
        _channel = Channel.CreateBounded<IncomingRequest>(new BoundedChannelOptions(options.Value.MaxQueuedRequests)
        {
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public ChannelReader<IncomingRequest> Reader => _channel.Reader;

    public bool TryEnqueue(IncomingRequest request) => _channel.Writer.TryWrite(request);

    /// <summary>Requests waiting for a worker.</summary>
    public int Count => _channel.Reader.Count;

    /// <summary>A <c>rate_limited</c> answer (an <see cref="ErrorResponse"/>, readable as every response type) for a source that failed too often.</summary>
    public static byte[] RateLimitedAnswer(int retryAfterSeconds) => JsonSerializer.SerializeToUtf8Bytes(
        new ErrorResponse
        {
            Error = new ErrorBody(ErrorCodes.RateLimited, "too many failed attempts from this address; wait before trying again") { RetryAfterSeconds = retryAfterSeconds },
        },
        EnrollJsonContext.Default.ErrorResponse);

    /// <summary>
    /// An <c>unavailable</c> answer for a request <see cref="AdmissionControl"/> refused: it would have been answered after
    /// its sender stopped waiting. <paramref name="retryAfterSeconds"/> is the sender's own slot after the backlog.
    /// </summary>
    public static byte[] BusyAnswer(int retryAfterSeconds) => JsonSerializer.SerializeToUtf8Bytes(
        new ErrorResponse
        {
            Error = new ErrorBody(ErrorCodes.Unavailable, "the server is busy and would answer after this request's sender stops waiting; try again after retry_after_seconds") { RetryAfterSeconds = retryAfterSeconds },
        },
        EnrollJsonContext.Default.ErrorResponse);

    /// <summary>An <c>unavailable</c> answer (an <see cref="ErrorResponse"/>, readable as every response type) for a request that found the queue full.</summary>
    public static byte[] OverloadedAnswer { get; } = JsonSerializer.SerializeToUtf8Bytes(
        new ErrorResponse
        {
            Error = new ErrorBody(ErrorCodes.Unavailable, "the server is overloaded; try again later") { RetryAfterSeconds = OverloadedRetryAfterSeconds },
        },
        EnrollJsonContext.Default.ErrorResponse);
}
