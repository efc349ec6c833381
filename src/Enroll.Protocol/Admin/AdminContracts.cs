using System.Text.Json;
using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Admin;

/// <summary>Body of <c>POST /api/tokens</c>.</summary>
public sealed record CreateProvisioningTokenRequest
{
    /// <summary>The organisation devices using the token join. Required.</summary>
    public string? OrgId { get; init; }

    /// <summary>Devices using the token are approved without an operator.</summary>
    public bool AutoApprove { get; init; }

    /// <summary>When the token stops working; never when absent.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>How many new devices may use the token; unlimited when absent.</summary>
    public int? MaxUses { get; init; }

    /// <summary>A note for operators.</summary>
    public string? Description { get; init; }

    /// <summary>Lifetime of Registration Tokens issued through this token, in seconds; the server default when absent.</summary>
    public long? RegistrationTokenLifetimeSeconds { get; init; }
}

/// <summary>A Provisioning Token as the API shows it. <see cref="Token"/> (the secret) appears only when it is created.</summary>
public sealed record ProvisioningTokenInfo
{
    /// <summary>The token's public ID, used to revoke it.</summary>
    public required string Id { get; init; }

    /// <summary>The secret to give devices; only in the answer to creation.</summary>
    public string? Token { get; init; }

    /// <summary>The organisation.</summary>
    public required string OrgId { get; init; }

    /// <summary>The operator's note.</summary>
    public string? Description { get; init; }

    /// <summary>Whether devices are approved without an operator.</summary>
    public bool AutoApprove { get; init; }

    /// <summary>Use limit, if any.</summary>
    public int? MaxUses { get; init; }

    /// <summary>Devices created with the token so far.</summary>
    public int Uses { get; init; }

    /// <summary><c>active</c>, <c>revoked</c>, <c>expired</c> or <c>used_up</c>.</summary>
    public required string Status { get; init; }

    /// <summary>Expiry, if any.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>Creation time.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Revocation time, if revoked.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>A device as the API shows it.</summary>
public sealed record DeviceInfo
{
    /// <summary>The Device ID.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The organisation.</summary>
    public required string OrgId { get; init; }

    /// <summary>The Client ID the device registered with.</summary>
    public required string ClientId { get; init; }

    /// <summary>The device's name.</summary>
    public string? DeviceName { get; init; }

    /// <summary><c>active</c> or <c>revoked</c>.</summary>
    public required string Status { get; init; }

    /// <summary>The device's last reported facts.</summary>
    public Dictionary<string, JsonElement>? Metadata { get; init; }

    /// <summary>The Provisioning Token it joined with.</summary>
    public string? ProvisioningTokenId { get; init; }

    /// <summary>Creation time.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Last registration.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? LastRegisteredAt { get; init; }

    /// <summary>Revocation time, if revoked.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? RevokedAt { get; init; }

    /// <summary>
    /// Only in the answer to a revoke: what became of the device's open broker session — <c>disconnected</c>,
    /// <c>not_connected</c>, or <c>not_supported_by_external_broker</c> (an external broker keeps a session open until it
    /// ends; the device's tokens are refused all the same).
    /// </summary>
    public string? Disconnect { get; init; }
}

/// <summary>A provisioning operation as the API shows it.</summary>
public sealed record ProvisioningOperationInfo
{
    /// <summary>The operation's ID.</summary>
    public required string OperationId { get; init; }

    /// <summary><c>pending</c>, <c>approved</c>, <c>rejected</c>, <c>expired</c> or <c>completed</c>.</summary>
    public required string Status { get; init; }

    /// <summary>The organisation.</summary>
    public required string OrgId { get; init; }

    /// <summary>The Client ID that asked.</summary>
    public required string ClientId { get; init; }

    /// <summary>The Provisioning Token used.</summary>
    public required string ProvisioningTokenId { get; init; }

    /// <summary>The Device ID the device asked for.</summary>
    public string? DesiredDeviceId { get; init; }

    /// <summary>Set when this operation gives an existing device (this Device ID) back to its client.</summary>
    public string? ReprovisionOf { get; init; }

    /// <summary>The Device ID assigned on approval.</summary>
    public string? DeviceId { get; init; }

    /// <summary>The device's name.</summary>
    public string? DeviceName { get; init; }

    /// <summary>The facts the device reported.</summary>
    public Dictionary<string, JsonElement>? Metadata { get; init; }

    /// <summary>The operator's reason, for rejections.</summary>
    public string? Reason { get; init; }

    /// <summary>Who decided: an operator, <c>auto-approve</c> or <c>expiry</c>.</summary>
    public string? DecidedBy { get; init; }

    /// <summary>Creation time.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>When a pending operation expires.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset ExpiresAt { get; init; }

    /// <summary>Decision time.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? DecidedAt { get; init; }

    /// <summary>When the device first registered with its Registration Token.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? CompletedAt { get; init; }
}

/// <summary>Body of <c>POST /api/provisioning-operations/{id}/reject</c> (and optionally of approve).</summary>
public sealed record OperationDecisionRequest
{
    /// <summary>Why the operator decided so; shown to the device on rejection.</summary>
    public string? Reason { get; init; }
}

/// <summary>One of the server's keys as the API shows it (public part only).</summary>
public sealed record ServerKeyInfo
{
    /// <summary>The key ID (RFC 7638 thumbprint).</summary>
    public required string Kid { get; init; }

    /// <summary><c>sig</c> (ES256 signing) or <c>enc</c> (ECDH-ES encryption).</summary>
    public required string Use { get; init; }

    /// <summary>True for the key new tokens are signed (or new requests encrypted) with.</summary>
    public bool Current { get; init; }

    /// <summary>When the key was created.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset CreatedAt { get; init; }
}

/// <summary>A stored device message as the API shows it.</summary>
public sealed record MessageInfo
{
    /// <summary>Position in the store; pass the last one seen as <c>after</c> to read only newer messages.</summary>
    public long Seq { get; init; }

    /// <summary>The device that sent it.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The device's message ID.</summary>
    public required string MessageId { get; init; }

    /// <summary>The stream.</summary>
    public required string Stream { get; init; }

    /// <summary>When the device stored it.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>When the server received it.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset ReceivedAt { get; init; }

    /// <summary>The payload's MIME type.</summary>
    public string? ContentType { get; init; }

    /// <summary>Custom properties.</summary>
    public Dictionary<string, string>? Properties { get; init; }

    /// <summary>The payload as text, when it is valid UTF-8.</summary>
    public string? Payload { get; init; }

    /// <summary>The payload in base64, when it is not valid UTF-8.</summary>
    public string? PayloadBase64 { get; init; }
}

/// <summary>A list answer: <c>{"items": [...]}</c>.</summary>
public sealed record ItemList<T>(IReadOnlyList<T> Items);

/// <summary>Error body of the admin API (RFC 9457 problem details).</summary>
public sealed record ApiProblem
{
    /// <summary>Short summary.</summary>
    public string? Title { get; init; }

    /// <summary>HTTP status.</summary>
    public int? Status { get; init; }

    /// <summary>Explanation.</summary>
    public string? Detail { get; init; }
}

/// <summary>Source-generated JSON for the admin API.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(CreateProvisioningTokenRequest))]
[JsonSerializable(typeof(ProvisioningTokenInfo))]
[JsonSerializable(typeof(ItemList<ProvisioningTokenInfo>))]
[JsonSerializable(typeof(DeviceInfo))]
[JsonSerializable(typeof(ItemList<DeviceInfo>))]
[JsonSerializable(typeof(ApiProblem))]
[JsonSerializable(typeof(ProvisioningOperationInfo))]
[JsonSerializable(typeof(ItemList<ProvisioningOperationInfo>))]
[JsonSerializable(typeof(OperationDecisionRequest))]
[JsonSerializable(typeof(ItemList<ServerKeyInfo>))]
[JsonSerializable(typeof(ItemList<MessageInfo>))]
[JsonSerializable(typeof(Messages.ServerKeySet))]
public sealed partial class AdminJsonContext : JsonSerializerContext;
