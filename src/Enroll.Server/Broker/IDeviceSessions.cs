namespace Enroll.Server.Broker;

/// <summary>
/// The devices' sessions on the broker requests arrive through, as far as the server can act on them: both transports
/// implement it, so the HTTP API ends a revoked device's session without knowing which broker it is.
/// </summary>
internal interface IDeviceSessions
{
    /// <summary>False when this transport cannot end a client's session (an external broker gives the server no means to).</summary>
    bool CanDisconnect { get; }

    /// <summary>
    /// Ends the broker session of <paramref name="deviceId"/>, connected as <paramref name="clientId"/>, if it has one:
    /// for a device an operator just revoked.
    /// </summary>
    Task<DisconnectResult> DisconnectAsync(string deviceId, string clientId, CancellationToken cancellationToken = default);
}

/// <summary>What <see cref="IDeviceSessions.DisconnectAsync"/> did.</summary>
internal enum DisconnectResult
{
    /// <summary>The device had a session, and it was ended.</summary>
    Disconnected,

    /// <summary>The device had no session to end.</summary>
    NotConnected,

    /// <summary>The transport cannot end sessions (external broker): a session the device has stays open until it ends.</summary>
    NotSupported,

    /// <summary>The transport could end sessions but the broker did not carry it out (logged): the session may stay open.</summary>
    Failed,
}

internal static class DisconnectResults
{
    /// <summary>The result as the admin API reports it (<c>disconnect</c> in a device revoke answer).</summary>
    public static string WireName(this DisconnectResult result) => result switch
    {
        DisconnectResult.Disconnected => "disconnected",
        DisconnectResult.NotConnected => "not_connected",
        DisconnectResult.Failed => "failed",
        _ => "not_supported_by_external_broker",
    };
}
