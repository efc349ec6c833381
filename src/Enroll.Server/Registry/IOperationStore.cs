namespace Enroll.Server.Registry;

/// <summary>
/// The provisioning operations aggregate: requests to join that wait for an operator's decision, and the Registration
/// Token handed out once one is approved. Every method is atomic; a decision that creates a device commits the device,
/// the Provisioning Token's counted use and the operation's new status together.
/// </summary>
internal interface IOperationStore
{
    /// <summary>Stores a new operation as given (normally pending). Fails when the ID exists.</summary>
    Task CreateOperationAsync(OperationRecord operation, CancellationToken cancellationToken = default);

    /// <summary>The operation with this ID, whatever its status, or null.</summary>
    Task<OperationRecord?> FindOperationAsync(string operationId, CancellationToken cancellationToken = default);

    /// <summary>The client's newest pending operation that has not expired at <paramref name="now"/>, or null.</summary>
    Task<OperationRecord?> FindPendingOperationAsync(string orgId, string clientId, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>At most <paramref name="limit"/> operations (optionally of one status), newest first.</summary>
    Task<IReadOnlyList<OperationRecord>> ListOperationsAsync(string? status, int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// Approves or rejects a pending operation atomically; only one of several concurrent decisions wins, the others get
    /// <see cref="DecideOperationResult.NotPending"/>. An operation past its expiry is marked expired instead
    /// (<see cref="DecideOperationResult.Expired"/>). Approval of a re-provisioning
    /// (<see cref="OperationRecord.ReprovisionOf"/>) re-enables that device with its old tokens revoked; otherwise it
    /// creates the device (the desired Device ID, else <paramref name="newDeviceId"/>) and counts a use of the operation's
    /// Provisioning Token — refused with <see cref="DecideOperationResult.DeviceIdTaken"/> when the ID or the client already
    /// has a device, or <see cref="DecideOperationResult.TokenUsedUp"/> past the token's max uses, leaving the operation pending.
    /// </summary>
    Task<DecideOperationOutcome> DecideOperationAsync(string operationId, bool approve, string? reason, string decidedBy, string newDeviceId, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Marks every pending operation whose expiry is at or before <paramref name="now"/> expired; returns how many.</summary>
    Task<int> ExpireOperationsAsync(DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>
    /// Attaches a Registration Token, signed by the caller, to an approved operation and records it in the device's ledger,
    /// in one commit — only the first time: when the operation already has one (a concurrent or repeated <c>complete</c>),
    /// nothing changes and the operation comes back with the token it has, so a client is never handed two. Returns the
    /// operation as it is after the call.
    /// </summary>
    Task<OperationRecord> AttachRegistrationTokenAsync(string operationId, string token, RegistrationTokenRecord record, CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks the approved operation whose attached token has the <c>jti</c> <paramref name="tokenId"/> completed at
    /// <paramref name="now"/> and forgets the token text. Does nothing when there is none (already completed, or another token).
    /// </summary>
    Task CompleteOperationByTokenAsync(string tokenId, DateTimeOffset now, CancellationToken cancellationToken = default);
}
