using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Messages;

/// <summary>
/// A command for a device, published by the server at QoS 1 to <c>enroll/v1/devices/{device_id}/commands</c> (SPEC §2.6).
/// The device answers it with a <see cref="CommandResultRequest"/>.
/// </summary>
public sealed record DeviceCommand
{
    /// <summary>The command's ID; a command delivered twice has the same ID and runs once.</summary>
    public string? CommandId { get; init; }

    /// <summary>What to do: the name a handler is registered under.</summary>
    public string? Name { get; init; }

    /// <summary>Its input, any JSON value; absent when the operator gave none.</summary>
    public JsonNode? Payload { get; init; }

    /// <summary>When the command stops being of use; a device does not start it after this time.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }
}

/// <summary>
/// Asks the server to deliver the device's queued commands now, oldest first, published to
/// <c>enroll/v1/devices/{device_id}/commands/pending</c> when the device connects.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record CommandsPendingRequest : IEnrollRequest
{
    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }

    /// <summary>None: the topic names the device.</summary>
    string? IEnrollRequest.ClientId => null;
}

/// <summary>The answer to a <see cref="CommandsPendingRequest"/>, sent after the commands were published.</summary>
public sealed record CommandsPendingResponse : IEnrollResponse
{
    /// <summary>How many commands were published to the device for this request.</summary>
    public int? Delivered { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}

/// <summary>
/// A device's result for a command, published to <c>enroll/v1/devices/{device_id}/commands/result</c> (SPEC §2.6).
/// Sending it again is harmless: a finished command keeps its first result.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record CommandResultRequest : IEnrollRequest
{
    /// <summary>The command answered. Required.</summary>
    public string? CommandId { get; init; }

    /// <summary>One of <see cref="CommandStatuses"/>: <c>succeeded</c>, <c>failed</c> or <c>rejected</c>. Required.</summary>
    public string? Status { get; init; }

    /// <summary>The handler's output, any JSON value.</summary>
    public JsonNode? Payload { get; init; }

    /// <summary>Why it failed or was rejected, for people.</summary>
    public string? Message { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }

    /// <summary>None: the topic names the device.</summary>
    string? IEnrollRequest.ClientId => null;
}

/// <summary>The answer to a <see cref="CommandResultRequest"/>: the command's state as recorded.</summary>
public sealed record CommandResultResponse : IEnrollResponse
{
    /// <summary>The command answered.</summary>
    public string? CommandId { get; init; }

    /// <summary>Its recorded state (<see cref="CommandStatuses"/>); for a command already finished, the state it finished in.</summary>
    public string? State { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}

/// <summary>The states of a command (SPEC §2.6): <c>queued → sent → succeeded | failed | rejected</c>, or <c>expired</c>, <c>canceled</c>.</summary>
public static class CommandStatuses
{
    /// <summary>Stored, not yet published to the device.</summary>
    public const string Queued = "queued";

    /// <summary>Published to the device; no result yet.</summary>
    public const string Sent = "sent";

    /// <summary>The handler ran and succeeded.</summary>
    public const string Succeeded = "succeeded";

    /// <summary>The handler ran and failed (or threw).</summary>
    public const string Failed = "failed";

    /// <summary>The device has no handler for the command's name.</summary>
    public const string Rejected = "rejected";

    /// <summary>Its time to live passed before it finished.</summary>
    public const string Expired = "expired";

    /// <summary>An operator canceled it before it finished.</summary>
    public const string Canceled = "canceled";

    /// <summary>The statuses a device may answer with.</summary>
    public static IReadOnlyList<string> Results { get; } = [Succeeded, Failed, Rejected];

    /// <summary>Every state.</summary>
    public static IReadOnlyList<string> All { get; } = [Queued, Sent, Succeeded, Failed, Rejected, Expired, Canceled];

    /// <summary>True for a state a command never leaves.</summary>
    public static bool IsFinal(string state) => state is Succeeded or Failed or Rejected or Expired or Canceled;
}
