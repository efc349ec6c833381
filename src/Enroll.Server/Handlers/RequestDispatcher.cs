using System.Diagnostics;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Encryption;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Domain;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Handlers;

/// <summary>
/// Takes requests from the broker, decodes them, runs their handler on a pool of workers and publishes the answer on the
/// response topic with the request's Correlation Data and <c>request_id</c>. Bad input is answered with
/// <c>invalid_request</c> when a response topic can be derived, logged and counted either way; the broker answers <c>unavailable</c>
/// when the <see cref="RequestQueue"/> is full. Nothing a client sends stops the workers.
/// </summary>
internal sealed partial class RequestDispatcher : BackgroundService
{
    private readonly Dictionary<string, RequestRoute> _routes;
    private readonly RequestQueue _queue;
    private readonly Tokens.EncryptionKeyRing _encryptionKeys;
    private readonly IResponsePublisher _publisher;
    private readonly EnrollServerOptions _options;
    private readonly ServerMetrics _metrics;
    private readonly ILogger<RequestDispatcher> _logger;
    private readonly TimeProvider _timeProvider;
    private readonly Registry.RegistryDiskFull? _diskFull;
    private readonly AdmissionControl? _admission;
    private readonly Refusals.RefusalLog? _refusals;

    public RequestDispatcher(
        IEnumerable<RequestRoute> routes,
        RequestQueue queue,
        Tokens.EncryptionKeyRing encryptionKeys,
        IResponsePublisher publisher,
        IOptions<EnrollServerOptions> options,
        ServerMetrics metrics,
        ILogger<RequestDispatcher> logger,
        TimeProvider? timeProvider = null,
        Registry.RegistryDiskFull? diskFull = null,
        AdmissionControl? admission = null,
        Refusals.RefusalLog? refusals = null)
    {
        _admission = admission;
        _diskFull = diskFull;
        _refusals = refusals;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _routes = RequestHandlerServices.CheckedRoutes(routes);
        _publisher = publisher;
        _options = options.Value;
        _metrics = metrics;
        _logger = logger;
        _queue = queue;
        _encryptionKeys = encryptionKeys;
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var workers = Enumerable.Range(0, Math.Max(1, _options.HandlerConcurrency))
            .Select(_ => Task.Run(() => WorkAsync(stoppingToken), CancellationToken.None));
        return Task.WhenAll(workers);
    }

    private async Task WorkAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var request in _queue.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                await ProcessAsync(request, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Handles one request to the end; never throws.</summary>
    internal async Task ProcessAsync(IncomingRequest request, CancellationToken cancellationToken)
    {
        if (request.ExpiresAt is { } expiresAt && _timeProvider.GetUtcNow() is var now && now >= expiresAt)
        {
            // Its sender stopped waiting for the answer (and has asked again, or given up): serving it would only delay
            // the requests behind it. No answer; counted and logged.
            _metrics.RequestRejected(request.Topic, "expired");
            LogExpired(_logger, request.Topic, request.SenderClientId ?? "?", now - request.ReceivedAt);
            _admission?.Served();
            return;
        }

        var started = Stopwatch.GetTimestamp();
        string outcome;
        try
        {
            outcome = Protocol.Requests.EnrollRequests.TryFind(request.Topic, out var declared) && _routes.TryGetValue(declared.Topic, out var route)
                ? await route.AcceptAsync(this, request, cancellationToken).ConfigureAwait(false)
                : "unknown_topic";
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return;
        }
#pragma warning disable CA1031 // last-chance handler: log, count and keep serving everyone else
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogUnexpected(_logger, request.Topic, ex);
            outcome = "internal_error";
        }

        _metrics.RequestHandled(request.Topic, outcome, Stopwatch.GetElapsedTime(started));
        _admission?.Served();
    }

    internal async Task<string> DispatchAsync<TRequest, TResponse>(RequestRoute<TRequest, TResponse> route, IncomingRequest request, CancellationToken cancellationToken)
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse
    {
        var declaration = route.Request;
        if (request.Payload.Length > _options.MaxRequestBytes)
        {
            await RejectUndecodedAsync(request, $"the request is larger than {_options.MaxRequestBytes} bytes", cancellationToken).ConfigureAwait(false);
            return "too_large";
        }

        var payload = request.Payload;
        byte[]? responseKey = null;
        if (JweEnvelope.LooksLikeJwe(payload.Span))
        {
            if (!JweEnvelope.TryOpenRequest(payload.Span, _encryptionKeys.Find, out var plaintext, out responseKey, out var why))
            {
                await RejectUndecodedAsync(request, $"cannot decrypt the request: {why}", cancellationToken).ConfigureAwait(false);
                return "undecryptable";
            }

            payload = plaintext;
        }
        else if (_options.RequireEncryption)
        {
            await RejectUndecodedAsync(request, "this server accepts only encrypted requests (JWE ECDH-ES + A256GCM to the key published on enroll/v1/server/keys)", cancellationToken).ConfigureAwait(false);
            return "plaintext_refused";
        }

        if (!EnrollJson.TryDeserialize(payload, declaration.RequestType, out var decoded, out var error))
        {
            await RejectUndecodedAsync(request, error, cancellationToken, responseKey: responseKey).ConfigureAwait(false);
            return "malformed";
        }

        if (declaration.IsDeviceScoped)
        {
            return await DispatchDeviceScopedAsync(route, request, decoded, responseKey, cancellationToken).ConfigureAwait(false);
        }

        var (deviceId, clientId, requestId) = declaration.Identifiers(decoded);
        if (string.IsNullOrEmpty(clientId))
        {
            await RejectUndecodedAsync(request, "client_id is required", cancellationToken, requestId, responseKey).ConfigureAwait(false);
            return "invalid";
        }

        if (!EnrollIdentifiers.IsValid(clientId) || (deviceId is not null && !EnrollIdentifiers.IsValid(deviceId)))
        {
            await RejectUndecodedAsync(request, $"client_id and device_id must be {EnrollIdentifiers.Rule}", cancellationToken, requestId, responseKey).ConfigureAwait(false);
            return "invalid";
        }

        if (request.SenderClientId is { } mqttClientId && !string.Equals(mqttClientId, clientId, StringComparison.Ordinal))
        {
            // A client speaks only for itself, or it could start operations or fetch answers for another client. The
            // refusal goes to the sender's own topic, never to the client it named.
            if (EnrollIdentifiers.IsValid(mqttClientId))
            {
                await SendErrorAsync(EnrollTopics.ClientResponses(mqttClientId), request.CorrelationData, new ErrorBody(ErrorCodes.Forbidden, $"client_id must equal your MQTT client ID ('{mqttClientId}')"), requestId, responseKey, cancellationToken).ConfigureAwait(false);
            }

            _metrics.RequestRejected(request.Topic, "client_id_mismatch");
            LogRejected(_logger, route.Name, mqttClientId, ErrorCodes.Forbidden, $"claimed client_id '{clientId}'");
            return ErrorCodes.Forbidden;
        }

        var conventional = EnrollTopics.ConventionalResponseTopic(deviceId, clientId);
        var responseTopic = request.ResponseTopic ?? conventional;
        if (!EnrollTopics.IsAllowedResponseTopic(responseTopic, deviceId, clientId))
        {
            var allowed = deviceId is null
                ? $"'{EnrollTopics.ClientResponses(clientId)}'"
                : $"'{EnrollTopics.ClientResponses(clientId)}' or '{EnrollTopics.DeviceResponses(deviceId)}'";
            await SendErrorAsync(conventional, request.CorrelationData, new ErrorBody(ErrorCodes.InvalidRequest, $"the response topic must be {allowed}"), requestId, responseKey, cancellationToken).ConfigureAwait(false);
            _metrics.RequestRejected(request.Topic, "response_topic");
            return "invalid";
        }

        var context = new RequestContext(request.SenderClientId, request.SenderDeviceId, request.ReceivedAt) { SenderAddress = request.SenderAddress, SenderCertificate = request.SenderCertificate };
        return await HandleAndAnswerAsync(route, request, decoded, context, responseTopic, clientId, requestId, responseKey, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A request under a device's own namespace: the topic names the device (the broker lets only that device publish
    /// there), so the payload carries neither client ID nor token, and the answer goes only to the device's response topic.
    /// </summary>
    private async Task<string> DispatchDeviceScopedAsync<TRequest, TResponse>(RequestRoute<TRequest, TResponse> route, IncomingRequest request, TRequest decoded, byte[]? responseKey, CancellationToken cancellationToken)
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse
    {
        var requestId = decoded.RequestId;
        Protocol.Requests.EnrollRequests.TryFind(request.Topic, out _, out var topicDeviceId);
        var deviceId = topicDeviceId!;
        if (request.SenderDeviceId is { } senderDeviceId && !string.Equals(senderDeviceId, deviceId, StringComparison.Ordinal))
        {
            // The embedded broker's access policy already refuses this publish; a transport that lets it through still
            // gets no answer to the other device's topic.
            await SendErrorAsync(EnrollTopics.DeviceResponses(senderDeviceId), request.CorrelationData, new ErrorBody(ErrorCodes.Forbidden, $"a device sends requests only under its own namespace ('{EnrollTopics.DeviceNamespace(senderDeviceId)}')"), requestId, responseKey, cancellationToken).ConfigureAwait(false);
            _metrics.RequestRejected(request.Topic, "device_mismatch");
            LogRejected(_logger, route.Name, senderDeviceId, ErrorCodes.Forbidden, $"published to device '{deviceId}'");
            return ErrorCodes.Forbidden;
        }

        var own = EnrollTopics.DeviceResponses(deviceId);
        var responseTopic = request.ResponseTopic ?? own;
        if (!string.Equals(responseTopic, own, StringComparison.Ordinal))
        {
            await SendErrorAsync(own, request.CorrelationData, new ErrorBody(ErrorCodes.InvalidRequest, $"the response topic must be '{own}'"), requestId, responseKey, cancellationToken).ConfigureAwait(false);
            _metrics.RequestRejected(request.Topic, "response_topic");
            return "invalid";
        }

        var context = new RequestContext(request.SenderClientId, request.SenderDeviceId, request.ReceivedAt)
        {
            SenderAddress = request.SenderAddress,
            SenderCertificate = request.SenderCertificate,
            TopicDeviceId = deviceId,
        };
        return await HandleAndAnswerAsync(route, request, decoded, context, responseTopic, deviceId, requestId, responseKey, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs the handler and publishes its answer, or the error it was refused with.</summary>
    private async Task<string> HandleAndAnswerAsync<TRequest, TResponse>(RequestRoute<TRequest, TResponse> route, IncomingRequest request, TRequest decoded, RequestContext context, string responseTopic, string sender, string? requestId, byte[]? responseKey, CancellationToken cancellationToken)
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse
    {
        var declaration = route.Request;
        byte[] answer;
        string outcome;
        try
        {
            var response = await route.Handler.HandleAsync(decoded, context, cancellationToken).ConfigureAwait(false);
            answer = JsonSerializer.SerializeToUtf8Bytes(response, declaration.ResponseType);
            outcome = "ok";
            _diskFull?.Succeeded();
        }
        catch (RejectedException rejected)
        {
            LogRejected(_logger, route.Name, sender, rejected.Code, rejected.Message);
            _metrics.RequestRejected(request.Topic, rejected.Code);
            if (rejected.Code == ErrorCodes.RateLimited)
            {
                // The client (or device) a handler found out of attempts; an address out of attempts is refused at intake.
                _refusals?.Record(Refusals.RefusalLog.RateLimited, route.Name, sender);
            }

            answer = ErrorAnswer(new ErrorBody(rejected.Code, rejected.Message) { RetryAfterSeconds = rejected.RetryAfterSeconds }, requestId);
            outcome = rejected.Code;
        }
        catch (Exception ex) when (ex is not OperationCanceledException && Registry.DiskFull.Is(ex) && _diskFull is not null)
        {
            // Nothing is stored: the device comes back later, and the log says "disk full" once per interval, not per request.
            _diskFull.Refused(route.Name, ex);
            _metrics.RequestRejected(request.Topic, ErrorCodes.Unavailable);
            answer = ErrorAnswer(new ErrorBody(ErrorCodes.Unavailable, "the server cannot store anything now (its disk is full); try again later") { RetryAfterSeconds = _diskFull.RetryAfterSeconds }, requestId);
            outcome = "disk_full";
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogUnexpected(_logger, request.Topic, ex);
            _metrics.RequestRejected(request.Topic, ErrorCodes.Internal);
            answer = ErrorAnswer(new ErrorBody(ErrorCodes.Internal, "the server failed to handle the request") { RetryAfterSeconds = 1 }, requestId);
            outcome = ErrorCodes.Internal;
        }

        await SendAsync(responseTopic, request.CorrelationData, answer, requestId, responseKey, cancellationToken).ConfigureAwait(false);
        return outcome;
    }

    /// <summary>Answers a request that could not be read, when its (MQTT 5) response topic is a plausible one.</summary>
    private async Task RejectUndecodedAsync(IncomingRequest request, string reason, CancellationToken cancellationToken, string? requestId = null, byte[]? responseKey = null)
    {
        _metrics.RequestRejected(request.Topic, ErrorCodes.InvalidRequest);
        LogInvalid(_logger, request.Topic, request.SenderClientId ?? "?", reason);
        if (request.ResponseTopic is { } topic && EnrollTopics.IsResponseTopicShape(topic))
        {
            await SendErrorAsync(topic, request.CorrelationData, new ErrorBody(ErrorCodes.InvalidRequest, reason), requestId, responseKey, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// An error answer. Every response type ends with <c>request_id</c> and <c>error</c>, so an <see cref="ErrorResponse"/>
    /// is byte for byte the typed response a client expects with only those two set.
    /// </summary>
    private static byte[] ErrorAnswer(ErrorBody error, string? requestId) =>
        JsonSerializer.SerializeToUtf8Bytes(new ErrorResponse { Error = error, RequestId = requestId }, EnrollJsonContext.Default.ErrorResponse);

    private Task SendErrorAsync(string topic, byte[]? correlationData, ErrorBody error, string? requestId, byte[]? responseKey, CancellationToken cancellationToken) =>
        SendAsync(topic, correlationData, ErrorAnswer(error, requestId), requestId, responseKey, cancellationToken);

    /// <summary>Publishes the answer; sealed with the request's response key when the request came encrypted.</summary>
    private async Task SendAsync(string topic, byte[]? correlationData, byte[] payload, string? requestId, byte[]? responseKey, CancellationToken cancellationToken)
    {
        if (responseKey is null)
        {
            await _publisher.PublishAsync(topic, payload, correlationData, retain: false, cancellationToken).ConfigureAwait(false);
            return;
        }

        var sealedAnswer = System.Text.Encoding.ASCII.GetBytes(JweEnvelope.SealResponse(payload, responseKey, requestId));
        await _publisher.PublishAsync(topic, sealedAnswer, correlationData, retain: false, cancellationToken, JweEnvelope.ContentType).ConfigureAwait(false);
    }

    [LoggerMessage(100, LogLevel.Warning, "Invalid request on {Topic} from {ClientId}: {Reason}")]
    private static partial void LogInvalid(ILogger logger, string topic, string clientId, string reason);

    [LoggerMessage(101, LogLevel.Information, "{Request} from {ClientId} refused: {Code} ({Reason})")]
    private static partial void LogRejected(ILogger logger, string request, string clientId, string code, string reason);

    [LoggerMessage(102, LogLevel.Error, "Request on {Topic} failed unexpectedly")]
    private static partial void LogUnexpected(ILogger logger, string topic, Exception exception);

    [LoggerMessage(103, LogLevel.Debug, "Dropped a request on {Topic} from {ClientId}: it expired after {Waited} in the queue")]
    private static partial void LogExpired(ILogger logger, string topic, string clientId, TimeSpan waited);

}
