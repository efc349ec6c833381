using System.Collections.Concurrent;
using System.Text;
using Enroll.Device.Connection;

namespace Enroll.Device.Tests.Fakes;

/// <summary>
/// A hand-written <see cref="IDeviceConnection"/>: records every operation in order and answers requests through
/// <see cref="Responder"/> (null answer = the server stays silent).
/// </summary>
internal sealed class FakeBroker : IDeviceConnection
{
    private readonly ConcurrentQueue<string> _operations = new();
    private long _generation;

    /// <summary>Given a published request, returns the answer payload, or null to stay silent.</summary>
    public Func<OutgoingMessage, string?>? Responder { get; set; }

    public IReadOnlyList<string> Operations => _operations.ToList();

    /// <summary>When set, every CONNECT as a device (username and password) is refused, as a broker without device auth would.</summary>
    public bool RefuseDevices { get; set; }

    /// <summary>How many CONNECTs as a device were refused.</summary>
    public int RefusedConnects => Volatile.Read(ref _refused);

    private int _refused;

    public ConcurrentQueue<OutgoingMessage> Published { get; } = new();

    public bool IsConnected { get; private set; }

    public ConnectionCredentials? Credentials { get; private set; }

    public long Generation => Interlocked.Read(ref _generation);

    public event Func<IncomingMessage, Task>? MessageReceived;

    public event Action<Exception?>? Disconnected;

    public event Action<ConnectionCredentials>? Connected;

    public int PublishCount(string topic) => Published.Count(m => m.Topic == topic);

    public Task ConnectAsync(ConnectionCredentials credentials, CancellationToken cancellationToken)
    {
        if (IsConnected && Equals(Credentials, credentials))
        {
            return Task.CompletedTask;
        }

        if (RefuseDevices && credentials.IsAuthenticated)
        {
            Interlocked.Increment(ref _refused);
            _operations.Enqueue($"refused:{credentials}");
            throw new EnrollConnectionException("the broker refused the connection: BadUserNameOrPassword") { CredentialsRefused = true };
        }

        _operations.Enqueue($"connect:{credentials}");
        Credentials = credentials;
        IsConnected = true;
        Interlocked.Increment(ref _generation);
        Connected?.Invoke(credentials);
        return Task.CompletedTask;
    }

    public Task DisconnectAsync(CancellationToken cancellationToken)
    {
        _operations.Enqueue("disconnect");
        IsConnected = false;
        Disconnected?.Invoke(null);
        return Task.CompletedTask;
    }

    public Task SubscribeAsync(string topicFilter, int qualityOfService, CancellationToken cancellationToken)
    {
        _operations.Enqueue($"subscribe:{topicFilter}");
        return Task.CompletedTask;
    }

    public Task SubscribeAsync(IReadOnlyList<string> topicFilters, int qualityOfService, CancellationToken cancellationToken)
    {
        foreach (var topicFilter in topicFilters)
        {
            _operations.Enqueue($"subscribe:{topicFilter}");
        }

        return Task.CompletedTask;
    }

    public Task UnsubscribeAsync(string topicFilter, CancellationToken cancellationToken)
    {
        _operations.Enqueue($"unsubscribe:{topicFilter}");
        return Task.CompletedTask;
    }

    public Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken)
    {
        _operations.Enqueue($"publish:{message.Topic}");
        Published.Enqueue(message);
        var answer = Responder?.Invoke(message);
        if (answer is not null && message.ResponseTopic is not null)
        {
            // Answer from another thread, as a broker would.
            _ = Task.Run(() => MessageReceived?.Invoke(new IncomingMessage(message.ResponseTopic, Encoding.UTF8.GetBytes(answer)) { CorrelationData = message.CorrelationData }), CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    /// <summary>Delivers <paramref name="answer"/> as the server's answer to <paramref name="request"/>, now.</summary>
    public Task DeliverAsync(OutgoingMessage request, string answer) =>
        MessageReceived?.Invoke(new IncomingMessage(request.ResponseTopic!, Encoding.UTF8.GetBytes(answer)) { CorrelationData = request.CorrelationData }) ?? Task.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
