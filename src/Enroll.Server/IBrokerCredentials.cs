namespace Enroll.Server;

/// <summary>
/// Tells the broker which credentials devices may connect with, where the server administers the broker's
/// authentication (Mosquitto's dynamic-security plugin, <see cref="BrokerAdmin.MosquittoDynamicSecurity"/>). The embedded
/// broker checks access tokens itself, and an external broker without an administrator needs nothing: both get
/// <see cref="NoBrokerCredentials"/>.
/// </summary>
internal interface IBrokerCredentials
{
    /// <summary>
    /// Called for every access token issued to <paramref name="deviceId"/>, before the answer carrying it is sent, so
    /// the device's first connection with it succeeds; replaces the token the broker accepted before. Throws
    /// <see cref="Domain.RejectedException"/> (<c>unavailable</c>) when the broker could not be told: the device retries.
    /// </summary>
    Task DeviceTokenIssuedAsync(string deviceId, string clientId, string accessToken, DateTimeOffset expiresAt, CancellationToken cancellationToken);

    /// <summary>Called when the device's tokens were revoked: the broker refuses the device and ends its session.</summary>
    Task DeviceTokensRevokedAsync(string deviceId, CancellationToken cancellationToken);
}

/// <summary>Which broker administrator the server runs (<see cref="EnrollServerOptions.BrokerAdmin"/>).</summary>
public enum BrokerAdmin
{
    /// <summary>None: the embedded broker checks tokens itself, or an external broker is set up by other means.</summary>
    None,

    /// <summary>
    /// Mosquitto's dynamic-security plugin, administered over <c>$CONTROL/dynamic-security/v1</c>: each device is a
    /// client named by its Device ID with its access token as password and a role of its own topics (docs/operations.md).
    /// </summary>
    MosquittoDynamicSecurity,

    /// <summary>
    /// An EMQX 5 cluster's REST API (<see cref="EnrollServerOptions.BrokerAdminUrl"/>, an API key in
    /// <see cref="EnrollServerOptions.BrokerAdminKey"/>): a revoked device's session is kicked. Devices authenticate
    /// through the webhooks (<see cref="EnrollServerOptions.BrokerHooks"/>).
    /// </summary>
    EmqxApi,
}

/// <summary>The broker needs no word of issued tokens (the embedded broker validates them itself).</summary>
internal sealed class NoBrokerCredentials : IBrokerCredentials
{
    public Task DeviceTokenIssuedAsync(string deviceId, string clientId, string accessToken, DateTimeOffset expiresAt, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task DeviceTokensRevokedAsync(string deviceId, CancellationToken cancellationToken) => Task.CompletedTask;
}
