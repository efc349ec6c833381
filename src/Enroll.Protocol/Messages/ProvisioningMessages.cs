using System.Text.Json;
using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Messages;

/// <summary>Starts a provisioning operation, published to <c>enroll/v1/provisioning/init</c> (SPEC §2.2).</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record ProvisioningInitRequest : IEnrollRequest
{
    /// <summary>The (possibly shared) Provisioning Token. Required.</summary>
    public string? ProvisioningToken { get; init; }

    /// <summary>The identifier the device chose itself. Required.</summary>
    public string? ClientId { get; init; }

    /// <summary>The Device ID the device would like; honoured when free.</summary>
    public string? DesiredDeviceId { get; init; }

    /// <summary>A human-friendly name for the device.</summary>
    public string? DeviceName { get; init; }

    /// <summary>The organisation; must match the token's organisation when given.</summary>
    public string? OrgId { get; init; }

    /// <summary>Device facts shown to the operator who decides.</summary>
    public Dictionary<string, JsonElement>? Metadata { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }
}

/// <summary>The answer to a <see cref="ProvisioningInitRequest"/>.</summary>
public sealed record ProvisioningInitResponse : IEnrollResponse
{
    /// <summary>The operation's ID, used with <c>complete</c>.</summary>
    public string? OperationId { get; init; }

    /// <summary><c>pending</c> or <c>approved</c>.</summary>
    public string? Status { get; init; }

    /// <summary>When a pending operation expires.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>Suggested wait before polling <c>complete</c>.</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}

/// <summary>Asks for the outcome of an operation, published to <c>enroll/v1/provisioning/complete</c>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record ProvisioningCompleteRequest : IEnrollRequest
{
    /// <summary>The operation's ID from <c>init</c>. Required.</summary>
    public string? OperationId { get; init; }

    /// <summary>The same Client ID that started the operation. Required.</summary>
    public string? ClientId { get; init; }

    /// <summary>
    /// The Provisioning Token that started the operation. Required: the operation ID travels on the client's topic, so it
    /// alone must not be enough to collect the Registration Token.
    /// </summary>
    public string? ProvisioningToken { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }
}

/// <summary>
/// The answer to a <see cref="ProvisioningCompleteRequest"/>, and the status the server pushes to the device's response
/// topic when an operator decides (then without a Registration Token).
/// </summary>
public sealed record ProvisioningCompleteResponse : IEnrollResponse
{
    /// <summary>The operation this answer is about.</summary>
    public string? OperationId { get; init; }

    /// <summary><c>pending</c>, <c>approved</c>, <c>rejected</c> or <c>expired</c>.</summary>
    public string? Status { get; init; }

    /// <summary>The Device ID, once approved.</summary>
    public string? DeviceId { get; init; }

    /// <summary>The Registration Token, once approved (only in answers to <c>complete</c>).</summary>
    public string? RegistrationToken { get; init; }

    /// <summary>When <see cref="RegistrationToken"/> expires.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>While pending: how long to wait before asking again.</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}

/// <summary>The states of a provisioning operation.</summary>
public static class OperationStatus
{
    /// <summary>Waiting for an operator.</summary>
    public const string Pending = "pending";

    /// <summary>Approved; <c>complete</c> returns the Registration Token.</summary>
    public const string Approved = "approved";

    /// <summary>Rejected by an operator. Final.</summary>
    public const string Rejected = "rejected";

    /// <summary>Left pending too long. Final.</summary>
    public const string Expired = "expired";

    /// <summary>Approved and its Registration Token used. Final.</summary>
    public const string Completed = "completed";
}
