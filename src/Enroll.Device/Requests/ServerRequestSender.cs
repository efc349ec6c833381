using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
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

    public ServerRequestSender(RequestChannel channel, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<ServerRequestSender> logger, DeviceMetrics? metrics = null)
    {
        _channel = channel;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _metrics = metrics;
    }

    /// <summary>
    /// Sends a request built by <paramref name="build"/> (given the attempt's request ID) to <paramref name="topic"/>.
    /// </summary>
    public async Task<TResponse> SendAsync<TRequest, TResponse>(
        string name,
        string topic,
        Func<string, TRequest> build,
        JsonTypeInfo<TRequest> requestType,
        JsonTypeInfo<TResponse> responseType,
        Func<ConnectionCredentials> credentials,
        Func<ConnectionCredentials, string> responseTopic,
        IRequestObserver? observer,
        CancellationToken cancellationToken)
        where TResponse : class, IEnrollResponse
    {
        using var exchange = _channel.Open();
        var attempt = 0;
        var started = Stopwatch.GetTimestamp();
        var pipeline = RetryPipelineFactory.Create(_options, _timeProvider, notice =>
        {
            Log.RetryScheduled(_logger, name, notice.FailedAttempt, Describe(notice.Cause), notice.Delay);
            observer?.OnRetry(name, notice);
            return ValueTask.CompletedTask;
        });

        try
        {
            var response = await pipeline.ExecuteAsync(
                async token =>
                {
                    attempt++;
                    observer?.OnAttempt(name, attempt);
                    _metrics?.Attempt(name);
                    var connectWith = credentials();
                    try
                    {
                        await _channel.Connection.ConnectAsync(connectWith, token).ConfigureAwait(false);
                    }
                    catch (EnrollConnectionException ex) when (ex.CredentialsRefused && connectWith.IsAuthenticated)
                    {
                        // The broker no longer accepts the access token (revoked or expired): requests need no
                        // credentials of the connection, so ask anonymously; the answer will say what to do next.
                        Log.AccessTokenRefusedAtConnect(_logger, ex.Message);
                        connectWith = ConnectionCredentials.Anonymous(connectWith.ClientId);
                        await _channel.Connection.ConnectAsync(connectWith, token).ConfigureAwait(false);
                    }

                    var answerTopic = responseTopic(connectWith);
                    await _channel.EnsureSubscribedAsync(answerTopic, _options.QualityOfService, token).ConfigureAwait(false);

                    var requestId = exchange.NextRequestId();
                    byte[] payload;
                    try
                    {
                        payload = JsonSerializer.SerializeToUtf8Bytes(build(requestId), requestType);
                    }
                    catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException)
                    {
                        throw new EnrollProtocolException($"cannot serialise the {name} request: {ex.Message}", ex);
                    }

                    Log.SendingRequest(_logger, name, attempt, _options.MaxAttempts, topic, answerTopic);
                    await exchange.PublishAsync(topic, payload, answerTopic, requestId, _options.QualityOfService, token).ConfigureAwait(false);
                    var answer = await exchange.ReceiveAsync(token).ConfigureAwait(false);
                    return Parse(name, answer, responseType);
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
