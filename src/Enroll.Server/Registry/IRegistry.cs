namespace Enroll.Server.Registry;

/// <summary>
/// The device registry: Provisioning Tokens, devices, provisioning operations, issued Registration Tokens and ingested
/// messages. SQLite by default; the interface keeps the handlers independent of the store.
/// </summary>
internal interface IRegistry : IAsyncDisposable
{
    Task CreateProvisioningTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default);

    Task<ProvisioningTokenRecord?> FindProvisioningTokenAsync(string id, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<ProvisioningTokenRecord>> ListProvisioningTokensAsync(CancellationToken cancellationToken = default);

    /// <summary>Marks the token revoked; false when it does not exist.</summary>
    Task<bool> RevokeProvisioningTokenAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default);

    Task<DeviceRecord?> FindDeviceAsync(string deviceId, CancellationToken cancellationToken = default);

    Task<DeviceRecord?> FindDeviceByClientAsync(string orgId, string clientId, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(string? orgId, int limit, CancellationToken cancellationToken = default);

    Task<int> CountDevicesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Registers atomically: re-registers the named device, or finds the client's device, or creates one (counting a use
    /// of the Provisioning Token). Concurrent requests from one client end up with one device.
    /// </summary>
    Task<RegisterDeviceOutcome> RegisterDeviceAsync(RegisterDeviceCommand command, CancellationToken cancellationToken = default);
}
