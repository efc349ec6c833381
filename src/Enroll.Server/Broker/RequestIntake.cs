using System.Buffers;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Handlers;
using Enroll.Server.Security;
using MQTTnet;

namespace Enroll.Server.Broker;

/// <summary>Who sent a request, as far as the transport knows.</summary>
internal sealed record RequestSender(string? ClientId, string? DeviceId, string? Address, CertificateIdentity? Certificate)
{
    /// <summary>A sender the transport knows nothing about: an external broker does not tell the server who published.</summary>
    public static RequestSender Unknown { get; } = new(null, null, null, null);
}

/// <summary>
/// Takes requests off the wire into the <see cref="RequestQueue"/>, for both transports (embedded and external broker),
/// with one rate-limit policy: a sender out of failed attempts is answered <c>rate_limited</c> here, so its burst never
/// queues ahead of other devices; a request that finds the queue full is answered <c>unavailable</c>. The sender is its
/// source address where the transport knows it (embedded broker); where it does not (external broker), the client its
/// answer is addressed to, which the dispatcher holds a request to (a request is answered only on its own client's or
/// device's response topic). A request that would be answered only after its sender stops waiting is answered
/// <c>unavailable</c> with its own retry slot (<see cref="AdmissionControl"/>).
/// </summary>
internal sealed class RequestIntake(RequestQueue queue, FailureRateLimiter limiter, AdmissionControl admission, ServerMetrics metrics, TimeProvider timeProvider, Refusals.RefusalLog refusals)
{
    /// <summary>True for the topics requests are published on; they are for the server alone, never routed to subscribers.</summary>
    public static bool IsRequest(string topic) => EnrollTopics.IsRequestTopic(topic);

    /// <summary>Queues <paramref name="message"/> (a request, see <see cref="IsRequest"/>), or answers it at once through <paramref name="answers"/>.</summary>
    public async Task TakeAsync(MqttApplicationMessage message, RequestSender sender, IResponsePublisher answers)
    {
        if (IsOutOfAttempts(message, sender, out var retryAfter))
        {
            metrics.RequestRejected(message.Topic, ErrorCodes.RateLimited);
            refusals.Record(Refusals.RefusalLog.RateLimited, message.Topic, sender.Address ?? sender.ClientId);
            await AnswerAsync(message, RequestQueue.RateLimitedAnswer((int)Math.Ceiling(Math.Max(1, retryAfter.TotalSeconds))), answers).ConfigureAwait(false);
            return;
        }

        var now = timeProvider.GetUtcNow();
        var request = new IncomingRequest(message.Topic, message.Payload.ToArray())
        {
            ResponseTopic = message.ResponseTopic,
            CorrelationData = message.CorrelationData,
            SenderClientId = sender.ClientId,
            SenderDeviceId = sender.DeviceId,
            SenderAddress = sender.Address,
            SenderCertificate = sender.Certificate,
            ReceivedAt = now,
            ExpiresAt = IncomingRequest.Expiry(now, message.MessageExpiryInterval),
        };
        if (!admission.TryAdmit(queue.Count, request.ExpiresAt, out var slot))
        {
            // It would wait in the queue past its sender's patience: told at once when to come back instead.
            metrics.RequestRejected(message.Topic, "busy");
            refusals.Record(Refusals.RefusalLog.Overloaded, message.Topic, sender.Address ?? sender.ClientId);
            await AnswerAsync(message, RequestQueue.BusyAnswer((int)Math.Ceiling(Math.Max(1, slot.TotalSeconds))), answers).ConfigureAwait(false);
            return;
        }

        if (!queue.TryEnqueue(request))
        {
            metrics.RequestRejected(message.Topic, "overloaded");
            refusals.Record(Refusals.RefusalLog.Overloaded, message.Topic, sender.Address ?? sender.ClientId);
            await AnswerAsync(message, RequestQueue.OverloadedAnswer, answers).ConfigureAwait(false);
        }
    }

    private bool IsOutOfAttempts(MqttApplicationMessage message, RequestSender sender, out TimeSpan retryAfter)
    {
        if (sender.Address is not null || sender.ClientId is not null)
        {
            return limiter.IsSourceLimited(sender.Address, out retryAfter);
        }

        retryAfter = TimeSpan.Zero;
        return message.ResponseTopic is { } topic
            && AnswerDelivery.TryParseClientResponses(topic, out var clientId)
            && limiter.IsClientLimited(clientId, out retryAfter);
    }

    /// <summary>An answer goes only to a response topic of the right shape; a request without one is only counted.</summary>
    private static Task AnswerAsync(MqttApplicationMessage message, byte[] answer, IResponsePublisher answers) =>
        message.ResponseTopic is { } topic && EnrollTopics.IsResponseTopicShape(topic)
            ? answers.PublishAsync(topic, answer, message.CorrelationData, retain: false, CancellationToken.None)
            : Task.CompletedTask;
}
