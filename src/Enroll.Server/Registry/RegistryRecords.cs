namespace Enroll.Server.Registry;

/// <summary>Device statuses.</summary>
internal static class DeviceStatuses
{
    public const string Active = "active";
    public const string Revoked = "revoked";
}

/// <summary>A device as the registry stores it.</summary>
internal sealed record DeviceRecord
{
    public required string DeviceId { get; init; }

    public required string OrgId { get; init; }

    public required string ClientId { get; init; }

    public string? Name { get; init; }

    public string? MetadataJson { get; init; }

    public required string Status { get; init; }

    public string? ProvisioningTokenId { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required DateTimeOffset UpdatedAt { get; init; }

    public DateTimeOffset? LastRegisteredAt { get; init; }

    /// <summary>Tokens of this device issued before this instant are revoked.</summary>
    public DateTimeOffset? TokensValidAfter { get; init; }

    public DateTimeOffset? RevokedAt { get; init; }

    public bool IsActive => Status == DeviceStatuses.Active;
}

/// <summary>A Provisioning Token as the registry stores it: the secret only as a hash.</summary>
internal sealed record ProvisioningTokenRecord
{
    public required string Id { get; init; }

    public required byte[] SecretHash { get; init; }

    public required string OrgId { get; init; }

    public string? Description { get; init; }

    public bool AutoApprove { get; init; }

    public int? MaxUses { get; init; }

    public int Uses { get; init; }

    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>Lifetime of Registration Tokens issued through this token; the server default when null.</summary>
    public TimeSpan? RegistrationTokenLifetime { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>What a registration asks the registry to do.</summary>
internal sealed record RegisterDeviceCommand
{
    public required string OrgId { get; init; }

    public required string ClientId { get; init; }

    /// <summary>The Device ID the request named (re-registration), or null for "find or create by client".</summary>
    public string? DeviceId { get; init; }

    /// <summary>The ID to give a device created by this command.</summary>
    public required string NewDeviceId { get; init; }

    public string? Name { get; init; }

    public string? MetadataJson { get; init; }

    /// <summary>The Provisioning Token used; a new device counts as one of its uses.</summary>
    public string? ProvisioningTokenId { get; init; }

    public required DateTimeOffset Now { get; init; }

    /// <summary>
    /// The device's new Registration Token, already signed by the caller for the device it expects this command to
    /// register (<see cref="RegistrationTokenRecord.DeviceId"/>); recorded in the same commit as the device, so a
    /// registration costs one commit. When the expectation no longer holds, the store answers
    /// <see cref="RegisterDeviceResult.Stale"/> and the caller signs again.
    /// </summary>
    public RegistrationTokenRecord? RegistrationToken { get; init; }

    /// <summary>
    /// Why this command may not register again as <paramref name="existing"/> (the device it names, or its client's), or
    /// null when it may. The same rules for every store: another organisation's device is not revealed (not found); the
    /// device belongs to another client; it is revoked; the command's Registration Token was signed for another device or
    /// before the device's tokens were revoked (stale).
    /// </summary>
    public RegisterDeviceOutcome? RefusalFor(DeviceRecord existing)
    {
        ArgumentNullException.ThrowIfNull(existing);
        if (existing.OrgId != OrgId)
        {
            return new RegisterDeviceOutcome(RegisterDeviceResult.NotFound, null);
        }

        if (existing.ClientId != ClientId)
        {
            return new RegisterDeviceOutcome(RegisterDeviceResult.OtherClient, existing);
        }

        if (!existing.IsActive)
        {
            return new RegisterDeviceOutcome(RegisterDeviceResult.Revoked, existing);
        }

        return RegistrationToken is { } token && (token.DeviceId != existing.DeviceId || token.IssuedAt < existing.TokensValidAfter)
            ? new RegisterDeviceOutcome(RegisterDeviceResult.Stale, existing)
            : null;
    }

    /// <summary>The device this command creates when it registers a new one: active, registered now.</summary>
    public DeviceRecord NewDevice() => new()
    {
        DeviceId = NewDeviceId,
        OrgId = OrgId,
        ClientId = ClientId,
        Name = Name,
        MetadataJson = MetadataJson,
        Status = DeviceStatuses.Active,
        ProvisioningTokenId = ProvisioningTokenId,
        CreatedAt = Now,
        UpdatedAt = Now,
        LastRegisteredAt = Now,
    };
}

/// <summary>How a registration went in the registry.</summary>
internal enum RegisterDeviceResult
{
    Created,
    Updated,
    NotFound,
    OtherClient,
    Revoked,
    TokenUsedUp,

    /// <summary>
    /// The command's Registration Token was signed for another device than the one registered now, or before the device's
    /// tokens were revoked: nothing was written; <see cref="RegisterDeviceOutcome.Device"/> is the device as it is now
    /// (null when the client has none), to sign for.
    /// </summary>
    Stale,
}

/// <summary>The result of <see cref="IDeviceStore.RegisterDeviceAsync"/>.</summary>
internal sealed record RegisterDeviceOutcome(RegisterDeviceResult Result, DeviceRecord? Device);

/// <summary>A provisioning operation as the registry stores it.</summary>
internal sealed record OperationRecord
{
    public required string OperationId { get; init; }

    public required string OrgId { get; init; }

    public required string ClientId { get; init; }

    public required string ProvisioningTokenId { get; init; }

    public string? DesiredDeviceId { get; init; }

    /// <summary>The Device ID assigned on approval.</summary>
    public string? DeviceId { get; init; }

    /// <summary>Set when the client already has a device: approving gives it back this Device ID.</summary>
    public string? ReprovisionOf { get; init; }

    public string? DeviceName { get; init; }

    public string? MetadataJson { get; init; }

    public required string Status { get; init; }

    public string? Reason { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required DateTimeOffset ExpiresAt { get; init; }

    public DateTimeOffset? DecidedAt { get; init; }

    public string? DecidedBy { get; init; }

    /// <summary>The Registration Token minted by <c>complete</c>, kept until the device registers with it.</summary>
    public string? RegistrationToken { get; init; }

    public string? RegistrationTokenId { get; init; }

    public DateTimeOffset? RegistrationTokenExpiresAt { get; init; }

    public DateTimeOffset? CompletedAt { get; init; }
}

/// <summary>What happened when an operator decided an operation.</summary>
internal enum DecideOperationResult
{
    Decided,
    NotFound,
    NotPending,
    Expired,
    DeviceIdTaken,
    TokenUsedUp,
}

internal sealed record DecideOperationOutcome(DecideOperationResult Result, OperationRecord? Operation);

/// <summary>An issued Registration Token, tracked by <c>jti</c> for refresh and reuse detection.</summary>
internal sealed record RegistrationTokenRecord
{
    public required string TokenId { get; init; }

    public required string DeviceId { get; init; }

    public required DateTimeOffset IssuedAt { get; init; }

    public required DateTimeOffset ExpiresAt { get; init; }

    public string? ReplacedBy { get; init; }

    public DateTimeOffset? ReplacedAt { get; init; }

    public bool GraceUsed { get; init; }
}

/// <summary>How a use of a Registration Token went against the ledger.</summary>
internal enum RegistrationTokenUse
{
    /// <summary>The token is current.</summary>
    Current,

    /// <summary>The token was refreshed away moments ago; this was its one extra use.</summary>
    GraceUse,

    /// <summary>The token was refreshed away and is used again: the device's tokens were revoked.</summary>
    Reused,

    /// <summary>The server has no record of the token.</summary>
    Unknown,
}

/// <summary>A stored device message.</summary>
internal sealed record StoredMessage(long Sequence, IngestedMessage Message);
