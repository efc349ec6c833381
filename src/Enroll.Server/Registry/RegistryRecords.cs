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
}

/// <summary>The result of <see cref="IRegistry.RegisterDeviceAsync"/>.</summary>
internal sealed record RegisterDeviceOutcome(RegisterDeviceResult Result, DeviceRecord? Device);
