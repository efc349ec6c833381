namespace Enroll.Device.Connection;

/// <summary>The device's one MQTT connection, shared by registration, token care and the outbox publisher.</summary>
internal interface IDeviceConnection : IAsyncDisposable
{
    /// <summary>True while connected.</summary>
    bool IsConnected { get; }

    /// <summary>The credentials of the current (or last) connection.</summary>
    ConnectionCredentials? Credentials { get; }

    /// <summary>Increments on every successful connect; subscriptions belong to one generation (sessions start clean).</summary>
    long Generation { get; }

    /// <summary>
    /// The largest packet the broker accepts, as its CONNACK announced it (MQTT 5 Maximum Packet Size) for the current
    /// connection; null when it announced none (or before the first connect).
    /// </summary>
    long? MaximumPacketSize => null;

    /// <summary>Raised for every message the broker delivers.</summary>
    event Func<IncomingMessage, Task>? MessageReceived;

    /// <summary>Raised when an established connection ends.</summary>
    event Action<Exception?>? Disconnected;

    /// <summary>Raised after each successful connect.</summary>
    event Action<ConnectionCredentials>? Connected;

    /// <summary>Connects with <paramref name="credentials"/>, first disconnecting if connected with other ones.</summary>
    Task ConnectAsync(ConnectionCredentials credentials, CancellationToken cancellationToken);

    /// <summary>Disconnects cleanly; no-op when not connected.</summary>
    Task DisconnectAsync(CancellationToken cancellationToken);

    /// <summary>Subscribes; throws <see cref="EnrollConnectionException"/> when the broker refuses the filter.</summary>
    Task SubscribeAsync(string topicFilter, int qualityOfService, CancellationToken cancellationToken);

    /// <summary>
    /// Subscribes to several filters in one SUBSCRIBE packet (one round trip); throws
    /// <see cref="EnrollConnectionException"/> when the broker refuses any of them.
    /// </summary>
    Task SubscribeAsync(IReadOnlyList<string> topicFilters, int qualityOfService, CancellationToken cancellationToken);

    /// <summary>Unsubscribes.</summary>
    Task UnsubscribeAsync(string topicFilter, CancellationToken cancellationToken);

    /// <summary>Publishes; for QoS 1 and 2 completes when the broker acknowledged, and throws if it refused.</summary>
    Task PublishAsync(OutgoingMessage message, CancellationToken cancellationToken);
}
