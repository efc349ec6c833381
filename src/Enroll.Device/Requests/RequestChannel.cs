using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Enroll.Device.Connection;
using Enroll.Protocol.Topics;

namespace Enroll.Device.Requests;

/// <summary>
/// Request/response over MQTT. Each request gets a fresh random request ID that travels as MQTT 5 Correlation Data and
/// as <c>request_id</c> in the payload (for MQTT 3.1.1). Answers are routed to the <see cref="RequestExchange"/> that
/// sent the request, so an answer to an earlier, timed-out attempt still completes the exchange.
/// </summary>
internal sealed class RequestChannel
{
    private readonly IDeviceConnection _connection;
    private readonly ConcurrentDictionary<string, RequestExchange> _pending = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _subscriptions = new(StringComparer.Ordinal);

    public RequestChannel(IDeviceConnection connection)
    {
        _connection = connection;
        _connection.MessageReceived += OnMessageAsync;
    }

    /// <summary>Raised for messages on a response topic that answer no pending request (for example status pushes).</summary>
    public event Func<IncomingMessage, Task>? Unsolicited;

    public IDeviceConnection Connection => _connection;

    /// <summary>Opens an exchange: a series of attempts whose answers all land in one place.</summary>
    public RequestExchange Open() => new(this);

    /// <summary>
    /// Subscribes to those of <paramref name="topics"/> not yet subscribed on the current connection, all in one
    /// SUBSCRIBE packet.
    /// </summary>
    public async Task EnsureSubscribedAsync(IReadOnlyList<string> topics, int qualityOfService, CancellationToken cancellationToken)
    {
        var generation = _connection.Generation;
        var missing = topics
            .Where(topic => !(_subscriptions.TryGetValue(topic, out var subscribedIn) && subscribedIn == generation && _connection.IsConnected))
            .ToList();
        if (missing.Count == 0)
        {
            return;
        }

        await _connection.SubscribeAsync(missing, qualityOfService, cancellationToken).ConfigureAwait(false);
        foreach (var topic in missing)
        {
            _subscriptions[topic] = generation;
        }
    }

    /// <summary>Unsubscribes from every topic this channel subscribed to.</summary>
    public async Task UnsubscribeAllAsync(CancellationToken cancellationToken)
    {
        foreach (var topic in _subscriptions.Keys.ToList())
        {
            _subscriptions.TryRemove(topic, out _);
            try
            {
                await _connection.UnsubscribeAsync(topic, cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollConnectionException)
            {
                // Not connected: the broker dropped the subscription with the session.
            }
        }
    }

    internal static string NewRequestId()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        return Convert.ToHexStringLower(bytes);
    }

    internal void Register(string requestId, RequestExchange exchange) => _pending[requestId] = exchange;

    internal void Unregister(string requestId) => _pending.TryRemove(requestId, out _);

    private async Task OnMessageAsync(IncomingMessage message)
    {
        if (message.Topic == EnrollTopics.ServerKeys)
        {
            // The server's key set, for the token verifier: no answer to anything.
            return;
        }

        var requestId = message.CorrelationData is { Length: > 0 } correlation
            ? Encoding.UTF8.GetString(correlation)
            : ReadRequestId(message.Payload.Span);
        if (requestId is not null && _pending.TryGetValue(requestId, out var exchange))
        {
            exchange.Deliver(message);
            return;
        }

        var handler = Unsolicited;
        if (handler is not null)
        {
            await handler(message).ConfigureAwait(false);
        }
    }

    /// <summary>Finds a top-level <c>request_id</c> string without deserialising the whole payload.</summary>
    internal static string? ReadRequestId(ReadOnlySpan<byte> payload)
    {
        if (Enroll.Protocol.Encryption.JweEnvelope.LooksLikeJwe(payload))
        {
            // Encrypted answers name their request in the protected header.
            return Enroll.Protocol.Encryption.JweEnvelope.ReadResponseRequestId(payload);
        }

        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 64 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isRequestId = reader.ValueTextEquals("request_id"u8);
                reader.Read();
                if (isRequestId && reader.TokenType == JsonTokenType.String)
                {
                    return reader.GetString();
                }

                reader.Skip();
            }
        }
        catch (JsonException)
        {
        }

        return null;
    }
}

/// <summary>
/// One logical request and its retries. Every attempt registers a new request ID; answers to any of them are queued here.
/// </summary>
internal sealed class RequestExchange : IDisposable
{
    private readonly RequestChannel _channel;
    private readonly List<string> _requestIds = [];
    private readonly Channel<IncomingMessage> _answers = Channel.CreateUnbounded<IncomingMessage>();

    internal RequestExchange(RequestChannel channel) => _channel = channel;

    /// <summary>Creates and registers the request ID of the next attempt.</summary>
    public string NextRequestId()
    {
        var id = RequestChannel.NewRequestId();
        lock (_requestIds)
        {
            _requestIds.Add(id);
        }

        _channel.Register(id, this);
        return id;
    }

    /// <summary>Publishes one attempt.</summary>
    public Task PublishAsync(string topic, byte[] payload, string responseTopic, string requestId, int qualityOfService, TimeSpan? usefulFor, CancellationToken cancellationToken, string contentType = "application/json") =>
        _channel.Connection.PublishAsync(
            new OutgoingMessage(topic, payload, qualityOfService)
            {
                ResponseTopic = responseTopic,
                CorrelationData = Encoding.UTF8.GetBytes(requestId),
                ContentType = contentType,
                ExpirySeconds = usefulFor is { } span ? (uint)Math.Max(1, Math.Ceiling(span.TotalSeconds)) : null,
            },
            cancellationToken);

    /// <summary>Waits for the next answer to any attempt of this exchange.</summary>
    public ValueTask<IncomingMessage> ReceiveAsync(CancellationToken cancellationToken) => _answers.Reader.ReadAsync(cancellationToken);

    internal void Deliver(IncomingMessage message) => _answers.Writer.TryWrite(message);

    public void Dispose()
    {
        lock (_requestIds)
        {
            foreach (var id in _requestIds)
            {
                _channel.Unregister(id);
            }

            _requestIds.Clear();
        }

        _answers.Writer.TryComplete();
    }
}
