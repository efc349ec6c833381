namespace Enroll.Server.Registry;

/// <summary>
/// The devices aggregate: devices, their revocation boundaries, and the ledger of the Registration Tokens issued to
/// them (by <c>jti</c>, for refresh and reuse detection). Every method is atomic: it commits all of its changes or none,
/// and a completed task means the change is durable to the store's configured level.
/// </summary>
internal interface IDeviceStore
{
    /// <summary>The device with this ID, or null.</summary>
    Task<DeviceRecord?> FindDeviceAsync(string deviceId, CancellationToken cancellationToken = default);

    /// <summary>The device of this client in this organisation (there is at most one), or null.</summary>
    Task<DeviceRecord?> FindDeviceByClientAsync(string orgId, string clientId, CancellationToken cancellationToken = default);

    /// <summary>
    /// One page of devices (optionally of one organisation) ordered by (<see cref="DeviceRecord.CreatedAt"/>, Device ID),
    /// at most <paramref name="limit"/>, starting after the device <paramref name="afterDeviceId"/> (the last of the
    /// previous page). Following the pages visits every device once, even when several share a creation instant.
    /// </summary>
    Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(string? orgId, int limit, string? afterDeviceId = null, CancellationToken cancellationToken = default);

    /// <summary>How many devices exist, revoked ones included.</summary>
    Task<int> CountDevicesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Registers atomically. With <see cref="RegisterDeviceCommand.DeviceId"/> the named device is re-registered; without,
    /// the client's device is, or a device <see cref="RegisterDeviceCommand.NewDeviceId"/> is created for the client,
    /// counting one use of <see cref="RegisterDeviceCommand.ProvisioningTokenId"/> in the same commit (never past its max
    /// uses: <see cref="RegisterDeviceResult.TokenUsedUp"/>, nothing written). Re-registering takes no use.
    /// <para>
    /// <see cref="RegisterDeviceCommand.RegistrationToken"/>, signed by the caller beforehand for the device it expects,
    /// is recorded in the ledger in the same commit. When that expectation no longer holds at commit time — the token is
    /// for another device than the one registered (a concurrent request of the same client created the client's device
    /// first) or was issued before the device's <see cref="DeviceRecord.TokensValidAfter"/> — nothing is written and the
    /// result is <see cref="RegisterDeviceResult.Stale"/> with the device as it is now (null when there is none yet), so
    /// the caller signs again. Concurrent commands for one client therefore end with one device.
    /// </para>
    /// </summary>
    Task<RegisterDeviceOutcome> RegisterDeviceAsync(RegisterDeviceCommand command, CancellationToken cancellationToken = default);

    /// <summary>
    /// Disables the device at <paramref name="at"/> (revoking again keeps the first instant) and revokes its tokens
    /// (<see cref="TokensValidAfter"/>). Returns the device as it is after the change, or null when unknown.
    /// </summary>
    Task<DeviceRecord?> RevokeDeviceAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Revokes every token of the device issued up to <paramref name="at"/> (<see cref="DeviceRecord.TokensValidAfter"/>
    /// moves to <see cref="TokensValidAfter"/>, never back), leaving the device enabled. Does nothing for an unknown device.
    /// </summary>
    Task RevokeDeviceTokensAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Records an issued Registration Token in the ledger as current; recording the same <c>jti</c> again changes nothing.</summary>
    Task RecordRegistrationTokenAsync(RegistrationTokenRecord record, CancellationToken cancellationToken = default);

    /// <summary>
    /// Checks one use of a Registration Token of <paramref name="deviceId"/> atomically: <see cref="RegistrationTokenUse.Current"/>
    /// when not refreshed away; <see cref="RegistrationTokenUse.GraceUse"/> for the one use allowed within
    /// <paramref name="grace"/> after it was refreshed away (recorded, so a second one is not); otherwise
    /// <see cref="RegistrationTokenUse.Reused"/>, and the device's tokens are revoked at <paramref name="now"/> in the same
    /// commit. <see cref="RegistrationTokenUse.Unknown"/> when the ledger has no such token of this device.
    /// </summary>
    Task<RegistrationTokenUse> UseRegistrationTokenAsync(string tokenId, string deviceId, DateTimeOffset now, TimeSpan grace, CancellationToken cancellationToken = default);

    /// <summary>
    /// Records <paramref name="replacement"/> as current and marks <paramref name="oldTokenId"/> refreshed away by it at
    /// <paramref name="now"/>, in one commit. A token already refreshed away keeps its first replacement.
    /// </summary>
    Task ReplaceRegistrationTokenAsync(string oldTokenId, RegistrationTokenRecord replacement, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>
    /// The revocation boundary for a revocation at <paramref name="at"/>: tokens carry whole-second <c>iat</c>, so every
    /// token issued up to the end of that second is revoked, and the issuer dates later tokens at this boundary or after.
    /// Every store uses this rule, so a token's fate does not depend on the store.
    /// </summary>
    static DateTimeOffset TokensValidAfter(DateTimeOffset at) =>
        DateTimeOffset.FromUnixTimeMilliseconds(((at.ToUnixTimeMilliseconds() / 1000) + 1) * 1000);
}
