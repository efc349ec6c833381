namespace Enroll.Server.Registry;

/// <summary>
/// The Provisioning Tokens aggregate: the tokens operators create, stored only as hashes, with their use counters.
/// A use is counted by the device store when it creates a device (see <see cref="IDeviceStore.RegisterDeviceAsync"/> and
/// <see cref="IOperationStore.DecideOperationAsync"/>), never here, so the count and the device it paid for commit together.
/// </summary>
internal interface IProvisioningTokenStore
{
    /// <summary>
    /// Stores a new token with no uses counted and not revoked, whatever <paramref name="token"/> says of
    /// <see cref="ProvisioningTokenRecord.Uses"/> and <see cref="ProvisioningTokenRecord.RevokedAt"/>. Fails when the ID exists.
    /// </summary>
    Task CreateProvisioningTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default);

    /// <summary>The token with this ID, as committed (uses counted so far), or null.</summary>
    Task<ProvisioningTokenRecord?> FindProvisioningTokenAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Every token, revoked ones included, oldest first (by creation time).</summary>
    Task<IReadOnlyList<ProvisioningTokenRecord>> ListProvisioningTokensAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks the token revoked at <paramref name="at"/>; revoking again keeps the first instant. False when the token does
    /// not exist.
    /// </summary>
    Task<bool> RevokeProvisioningTokenAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default);
}
