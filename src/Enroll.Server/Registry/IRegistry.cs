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

    Task<IReadOnlyList<DeviceRecord>> ListDevicesAsync(string? orgId, int limit, string? afterDeviceId = null, CancellationToken cancellationToken = default);

    Task<int> CountDevicesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Registers atomically: re-registers the named device, or finds the client's device, or creates one (counting a use
    /// of the Provisioning Token). Concurrent requests from one client end up with one device.
    /// </summary>
    Task<RegisterDeviceOutcome> RegisterDeviceAsync(RegisterDeviceCommand command, CancellationToken cancellationToken = default);

    /// <summary>Disables a device: its tokens stop working. False when unknown.</summary>
    Task<DeviceRecord?> RevokeDeviceAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Revokes every token of the device issued until <paramref name="at"/>, leaving the device enabled.</summary>
    Task RevokeDeviceTokensAsync(string deviceId, DateTimeOffset at, CancellationToken cancellationToken = default);

    Task CreateOperationAsync(OperationRecord operation, CancellationToken cancellationToken = default);

    Task<OperationRecord?> FindOperationAsync(string operationId, CancellationToken cancellationToken = default);

    /// <summary>The client's pending (not yet expired) operation, if any.</summary>
    Task<OperationRecord?> FindPendingOperationAsync(string orgId, string clientId, DateTimeOffset now, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<OperationRecord>> ListOperationsAsync(string? status, int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// Approves or rejects a pending operation atomically. Approval creates the device (counting a use of the token)
    /// or, for a re-provisioning, re-enables the existing one with its tokens revoked.
    /// </summary>
    Task<DecideOperationOutcome> DecideOperationAsync(string operationId, bool approve, string? reason, string decidedBy, string newDeviceId, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Marks pending operations past their expiry as expired; returns how many.</summary>
    Task<int> ExpireOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Stores the Registration Token minted for an approved operation (once) and records it in the ledger.</summary>
    Task<OperationRecord> AttachRegistrationTokenAsync(string operationId, string token, RegistrationTokenRecord record, CancellationToken cancellationToken = default);

    /// <summary>Marks the operation whose token this is as completed and forgets the token text.</summary>
    Task CompleteOperationByTokenAsync(string tokenId, DateTimeOffset now, CancellationToken cancellationToken = default);

    Task RecordRegistrationTokenAsync(RegistrationTokenRecord record, CancellationToken cancellationToken = default);

    /// <summary>
    /// Checks one use of a Registration Token: current; refreshed away within <paramref name="grace"/> and not yet used again
    /// (the grace use is recorded); or reused (the device's tokens are revoked atomically).
    /// </summary>
    Task<RegistrationTokenUse> UseRegistrationTokenAsync(string tokenId, string deviceId, DateTimeOffset now, TimeSpan grace, CancellationToken cancellationToken = default);

    /// <summary>Marks <paramref name="oldTokenId"/> as refreshed away by <paramref name="replacement"/> (recorded too).</summary>
    Task ReplaceRegistrationTokenAsync(string oldTokenId, RegistrationTokenRecord replacement, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Stores a device message unless one with the same Device ID and message ID exists; true when it was new.</summary>
    Task<bool> StoreMessageAsync(IngestedMessage message, CancellationToken cancellationToken = default);

    /// <summary>Messages after <paramref name="afterSequence"/> (optionally of one device), oldest first.</summary>
    Task<IReadOnlyList<StoredMessage>> ListMessagesAsync(string? deviceId, long afterSequence, int limit, CancellationToken cancellationToken = default);

    /// <summary>The newest <paramref name="limit"/> messages (optionally of one device), oldest first.</summary>
    Task<IReadOnlyList<StoredMessage>> RecentMessagesAsync(string? deviceId, int limit, long? beforeSequence = null, CancellationToken cancellationToken = default);

    /// <summary>How many messages are stored (optionally of one device).</summary>
    Task<long> CountMessagesAsync(string? deviceId, CancellationToken cancellationToken = default);
}
