using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Enroll.Device.Connection;
using System.Security.Cryptography;
using System.Text;
using Enroll.Device.Diagnostics;
using Enroll.Device.Tokens;
using Enroll.Protocol;
using Enroll.Protocol.Encryption;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Polly.Timeout;

namespace Enroll.Device.Requests;

/// <summary>Reports each attempt and retry of a request, for the state machine.</summary>
internal interface IRequestObserver
{
    void OnAttempt(string request, int attempt);

    void OnRetry(string request, RetryNotice notice);
}

/// <summary>
/// Sends one request to the server and returns its successful answer: connects when needed, subscribes to the response
/// topic before publishing, retries through <see cref="RetryPipelineFactory"/>, and turns error answers into
/// <see cref="EnrollServerException"/>.
/// </summary>
internal sealed class ServerRequestSender
{
    private readonly RequestChannel _channel;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly DeviceMetrics? _metrics;

    /// <summary>The device's metrics, for the components that send through this sender.</summary>
    internal DeviceMetrics? Metrics => _metrics;
    private readonly ServerTokenVerifier? _keys;
    private readonly Jitter _jitter;

    public ServerRequestSender(RequestChannel channel, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<ServerRequestSender> logger, DeviceMetrics? metrics = null, ServerTokenVerifier? keys = null, Jitter? jitter = null)
    {
        _jitter = jitter ?? Jitter.None;
        _channel = channel;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _metrics = metrics;
        _keys = keys;
        if (_options.EncryptRequests && keys is null)
        {
            throw new InvalidOperationException("encrypted requests need the server's keys");
        }
    }

    /// <summary>
    /// Sends a <paramref name="request"/> built by <paramref name="build"/> (given the attempt's request ID) to its topic.
    /// A device-scoped request (<see cref="EnrollRequest.IsDeviceScoped"/>) goes to the topic of the Device ID the
    /// connection is authenticated as, and its answer comes on that device's response topic (whatever
    /// <paramref name="responseTopic"/> says); it needs authenticated <paramref name="credentials"/> and never falls back to
    /// an anonymous connection, since the broker lets only the device itself publish under its namespace.
    /// </summary>
    public async Task<TResponse> SendAsync<TRequest, TResponse>(
        EnrollRequest<TRequest, TResponse> request,
        Func<string, TRequest> build,
        Func<ConnectionCredentials> credentials,
        Func<ConnectionCredentials, string> responseTopic,
        IRequestObserver? observer,
        CancellationToken cancellationToken)
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse
    {
        var name = request.Name;
        var topic = request.Topic;
        if (request.IsDeviceScoped && !credentials().IsAuthenticated)
        {
            throw new InvalidOperationException($"the {name} request is sent only on a connection authenticated as the device");
        }

        using var exchange = _channel.Open();
        var responseKeys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var refetchKey = false;
        var attempt = 0;
        var started = Stopwatch.GetTimestamp();
        var pipeline = RetryPipelineFactory.Create(_options, _timeProvider, notice =>
        {
            Log.RetryScheduled(_logger, name, notice.FailedAttempt, Describe(notice.Cause), notice.Delay);
            observer?.OnRetry(name, notice);
            return ValueTask.CompletedTask;
        }, _jitter);

        try
        {
            var response = await pipeline.ExecuteAsync(
                async token =>
                {
                    attempt++;
                    var attemptStarted = _timeProvider.GetTimestamp();
                    observer?.OnAttempt(name, attempt);
                    _metrics?.Attempt(name);
                    var connectWith = credentials();
                    try
                    {
                        await _channel.Connection.ConnectAsync(connectWith, token).ConfigureAwait(false);
                    }
                    catch (EnrollConnectionException ex) when (ex.CredentialsRefused && connectWith.IsAuthenticated && !request.IsDeviceScoped)
                    {
                        // The broker no longer accepts the access token (revoked or expired): requests need no
                        // credentials of the connection, so ask anonymously; the answer will say what to do next.
                        Log.AccessTokenRefusedAtConnect(_logger, ex.Message);
                        connectWith = ConnectionCredentials.Anonymous(connectWith.ClientId);
                        await _channel.Connection.ConnectAsync(connectWith, token).ConfigureAwait(false);
                    }

                    string answerTopic;
                    if (request.IsDeviceScoped)
                    {
                        // The topic names the device; the credentials say which (the broker checks they are its own).
                        topic = request.TopicFor(connectWith.Username);
                        answerTopic = EnrollTopics.DeviceResponses(connectWith.Username!);
                    }
                    else
                    {
                        answerTopic = responseTopic(connectWith);
                    }

                    await _channel.EnsureSubscribedAsync(SubscriptionsFor(answerTopic), _options.QualityOfService, token).ConfigureAwait(false);

                    var requestId = exchange.NextRequestId();
                    byte[] payload;
                    try
                    {
                        payload = JsonSerializer.SerializeToUtf8Bytes(build(requestId), request.RequestType);
                    }
                    catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException)
                    {
                        throw new EnrollProtocolException($"cannot serialise the {name} request: {ex.Message}", ex);
                    }

                    if (_options.EncryptRequests)
                    {
                        payload = await SealAsync(name, payload, requestId, responseKeys, refetchKey, token).ConfigureAwait(false);
                    }

                    Log.SendingRequest(_logger, name, attempt, _options.MaxAttempts, topic, answerTopic);
                    // The request is of use only while this attempt waits for its answer: a server that finds it expired in
                    // its queue (a storm) drops it rather than answering a device that has moved on to its next attempt.
                    var usefulFor = _options.AttemptTimeout - _timeProvider.GetElapsedTime(attemptStarted);
                    await exchange.PublishAsync(topic, payload, answerTopic, requestId, _options.QualityOfService, usefulFor, token, _options.EncryptRequests ? JweEnvelope.ContentType : "application/json").ConfigureAwait(false);
                    var answer = await exchange.ReceiveAsync(token).ConfigureAwait(false);
                    try
                    {
                        return Parse(name, Open(name, answer, responseKeys), request.ResponseType);
                    }
                    catch (EnrollServerException ex) when (_options.EncryptRequests && ex.Code == ErrorCodes.InvalidRequest && ex.ServerMessage.Contains("unknown encryption key", StringComparison.Ordinal) && !refetchKey)
                    {
                        // The server rotated its keys past the one we hold: fetch the current set and try once more.
                        refetchKey = true;
                        throw new EnrollServerException(ErrorCodes.Unavailable, ex.ServerMessage, TimeSpan.Zero);
                    }
                },
                cancellationToken).ConfigureAwait(false);
            _metrics?.Completed(name, "success", Stopwatch.GetElapsedTime(started));
            return response;
        }
        catch (Exception ex) when (ex is TimeoutRejectedException || (ex is EnrollException && RetryPipelineFactory.IsTransient(ex)))
        {
            _metrics?.Completed(name, "timeout", Stopwatch.GetElapsedTime(started));
            throw new EnrollTimeoutException(attempt, ex is TimeoutRejectedException ? null : ex);
        }
        catch (EnrollException)
        {
            _metrics?.Completed(name, "error", Stopwatch.GetElapsedTime(started));
            throw;
        }
    }

    /// <summary>
    /// The answer topic and, while the device has not got the server's key set yet, the retained key topic: both in one
    /// SUBSCRIBE, so the keys that check the answer's tokens arrive with it instead of costing two more round trips after it.
    /// </summary>
    private IReadOnlyList<string> SubscriptionsFor(string answerTopic)
    {
        if (_keys is { WantsPublishedKeys: true })
        {
            _keys.Listen(_channel.Connection);
            return [answerTopic, EnrollTopics.ServerKeys];
        }

        return [answerTopic];
    }

    /// <summary>Seals a request for the server's encryption key and remembers the key that opens its answer.</summary>
    private async Task<byte[]> SealAsync(string name, byte[] payload, string requestId, Dictionary<string, byte[]> responseKeys, bool refetch, CancellationToken cancellationToken)
    {
        var (keyId, serverKey) = await _keys!.GetEncryptionKeyAsync(_channel.Connection, refetch, cancellationToken).ConfigureAwait(false);
        SealedRequest sealedRequest;
        try
        {
            sealedRequest = JweEnvelope.SealRequest(payload, serverKey, keyId);
        }
        catch (CryptographicException ex)
        {
            throw new EnrollProtocolException($"cannot encrypt the {name} request: {ex.Message}", ex);
        }

        lock (responseKeys)
        {
            responseKeys[requestId] = sealedRequest.ResponseKey;
        }

        return Encoding.ASCII.GetBytes(sealedRequest.Compact);
    }

    /// <summary>
    /// Opens an encrypted answer with the key of the attempt it answers. Clear answers are taken only when they carry an
    /// error (the server could not read the request); a clear success would mean someone else answered.
    /// </summary>
    private IncomingMessage Open(string name, IncomingMessage answer, Dictionary<string, byte[]> responseKeys)
    {
        if (!_options.EncryptRequests)
        {
            return answer;
        }

        if (!JweEnvelope.LooksLikeJwe(answer.Payload.Span))
        {
            if (EnrollJson.TryDeserialize(answer.Payload, EnrollJsonContext.Default.ErrorResponse, out var clear, out _) && clear.Error is not null)
            {
                return answer;
            }

            throw new EnrollProtocolException($"the answer to the encrypted {name} request came unencrypted");
        }

        var requestId = answer.CorrelationData is { Length: > 0 } correlation ? Encoding.UTF8.GetString(correlation) : JweEnvelope.ReadResponseRequestId(answer.Payload.Span);
        byte[]? key;
        lock (responseKeys)
        {
            key = requestId is null ? null : responseKeys.GetValueOrDefault(requestId);
        }

        if (key is null)
        {
            throw new EnrollProtocolException($"the encrypted answer to {name} cannot be opened: it answers no request of ours");
        }

        if (!JweEnvelope.TryOpenResponse(answer.Payload.Span, key, out var plaintext, out var error))
        {
            throw new EnrollProtocolException($"the encrypted answer to {name} cannot be opened: {error}");
        }

        return answer with { Payload = plaintext };
    }

    private static TResponse Parse<TResponse>(string name, IncomingMessage answer, JsonTypeInfo<TResponse> responseType)
        where TResponse : class, IEnrollResponse
    {
        if (!EnrollJson.TryDeserialize(answer.Payload, responseType, out var response, out var error))
        {
            throw new EnrollProtocolException($"the server's answer to {name} on {answer.Topic} cannot be read: {error}");
        }

        if (response.Error is { } failure)
        {
            var retryAfter = failure.RetryAfterSeconds is int seconds and > 0 ? TimeSpan.FromSeconds(seconds) : (TimeSpan?)null;
            throw new EnrollServerException(failure.Code, failure.Message, retryAfter);
        }

        return response;
    }

    private static string Describe(Exception? exception) => exception switch
    {
        null => "unknown",
        TimeoutRejectedException => "no answer in time",
        _ => exception.Message,
    };
}
