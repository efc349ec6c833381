using System.Text.Json.Serialization;

namespace Enroll.Protocol.Admin;

// Issue 15, console: the bodies of /api/events, /api/overview, bulk decisions and device status reports.

/// <summary>
/// One server-sent event of <c>GET /api/events</c> (<c>text/event-stream</c>): the SSE <c>event:</c> field is
/// <see cref="Kind"/> and <c>data:</c> this record as JSON. Kinds: <c>operation</c> (a provisioning operation was created
/// or decided; <see cref="Operation"/>), <c>command</c> (a command changed state; <see cref="Command"/>), <c>device</c>
/// (registered, revoked or seen; <see cref="Device"/>), <c>twin</c> (a device's twin changed; <see cref="DeviceId"/>),
/// <c>resync</c> (events may have been missed: reload what is shown).
/// </summary>
public sealed record ServerEvent
{
    public required string Kind { get; init; }

    /// <summary>The device the event concerns, when there is one.</summary>
    public string? DeviceId { get; init; }

    public ProvisioningOperationInfo? Operation { get; init; }

    public CommandInfo? Command { get; init; }

    public DeviceInfo? Device { get; init; }
}

/// <summary>Which pending operations a bulk decision covers: every field given must match.</summary>
public sealed record OperationFilter
{
    public string? OrgId { get; init; }

    public string? ProvisioningTokenId { get; init; }

    /// <summary>Metadata members that must be equal (string comparison of the JSON value's text).</summary>
    public Dictionary<string, string>? Metadata { get; init; }
}

/// <summary><c>POST /api/provisioning-operations/bulk</c>: approve or reject every pending operation matching a filter.</summary>
public sealed record BulkDecisionRequest
{
    /// <summary><c>approve</c> or <c>reject</c>.</summary>
    public required string Action { get; init; }

    public required OperationFilter Filter { get; init; }

    /// <summary>The reason given to the devices of a rejection.</summary>
    public string? Reason { get; init; }

    /// <summary>True: only count what matches (the confirmation's "this will approve N").</summary>
    public bool DryRun { get; init; }
}

/// <summary>The answer to a bulk decision.</summary>
public sealed record BulkDecisionResult
{
    /// <summary>Pending operations that matched the filter.</summary>
    public int Matched { get; init; }

    /// <summary>Of those, decided now (0 for a dry run); the rest were decided by someone else meanwhile or expired.</summary>
    public int Decided { get; init; }

    public IReadOnlyList<string> OperationIds { get; init; } = [];
}

/// <summary>Counts per minute over the last hour, oldest first (60 buckets, the last one the current minute).</summary>
public sealed record MinuteSeries
{
    public DateTimeOffset Start { get; init; }

    public required IReadOnlyList<long> Counts { get; init; }
}

/// <summary>One refusal the overview lists: a rate-limited source, a refused token or credential.</summary>
public sealed record RefusalInfo
{
    public DateTimeOffset At { get; init; }

    /// <summary><c>rate_limited</c>, <c>token_refused</c>, <c>credential_refused</c>, <c>connection_refused</c>, ...</summary>
    public required string Kind { get; init; }

    public string? Reason { get; init; }

    /// <summary>The client, device, token ID or remote address it concerned.</summary>
    public string? Source { get; init; }

    /// <summary>How many were folded into this entry (refusals of one kind and source within a minute are one entry).</summary>
    public long Count { get; init; } = 1;
}

/// <summary>The outbox a device last reported (<c>enroll/v1/devices/{id}/status</c>).</summary>
public sealed record DeviceOutboxInfo
{
    public required string DeviceId { get; init; }

    public DateTimeOffset ReportedAt { get; init; }

    public long Pending { get; init; }

    public long PendingBytes { get; init; }

    /// <summary>Age in seconds of the oldest message not yet acknowledged, if any.</summary>
    public double? OldestAgeSeconds { get; init; }

    public long Quarantined { get; init; }
}

/// <summary><c>GET /api/overview</c>: the fleet at a glance.</summary>
public sealed record FleetOverview
{
    /// <summary>Devices by status (<c>active</c>, <c>revoked</c>, ...).</summary>
    public required Dictionary<string, long> DevicesByStatus { get; init; }

    public long PendingOperations { get; init; }

    public required MinuteSeries Registrations { get; init; }

    public required MinuteSeries Approvals { get; init; }

    public required MinuteSeries Messages { get; init; }

    /// <summary>The devices with the deepest outboxes, deepest first.</summary>
    public required IReadOnlyList<DeviceOutboxInfo> Outboxes { get; init; }

    /// <summary>Recent refusals, newest first.</summary>
    public required IReadOnlyList<RefusalInfo> Refusals { get; init; }
}

// --- Issue 15, device status reports and registration history (status part). ---

/// <summary>
/// One entry of <c>GET /api/devices/{id}/history</c>: something that happened to the device's registration, read from
/// the rows the registry keeps (provisioning operations, the device, its Registration Tokens, the audit log).
/// </summary>
public sealed record DeviceHistoryEntry
{
    /// <summary>The entry's cursor: pass it as <c>before</c> to get the entries older than this one.</summary>
    public required string Id { get; init; }

    public DateTimeOffset At { get; init; }

    /// <summary>
    /// <c>operation.created</c>, <c>operation.approved</c>, <c>operation.rejected</c>, <c>operation.expired</c>,
    /// <c>device.created</c>, <c>device.registered</c> (a Registration Token issued by registering or re-registering,
    /// provisioning included), <c>device.revoked</c>, or <c>audit.</c> followed by an operator action on the device
    /// (<c>audit.device.revoke</c>, <c>audit.twin.desired</c>, ...).
    /// </summary>
    public required string Kind { get; init; }

    /// <summary>Who: an operator's name, <c>auto-approve</c>, or <c>device</c> for what the device did itself.</summary>
    public string? By { get; init; }

    /// <summary>The provisioning operation it belongs to, if any.</summary>
    public string? OperationId { get; init; }

    /// <summary>The Provisioning Token used, if any.</summary>
    public string? ProvisioningTokenId { get; init; }

    /// <summary>True for an operation that re-provisions an existing (or revoked) device.</summary>
    public bool? Reprovision { get; init; }

    /// <summary>The client ID it concerned.</summary>
    public string? ClientId { get; init; }

    /// <summary>More, for people: a rejection's reason, an audit entry's detail.</summary>
    public string? Detail { get; init; }
}

/// <summary><c>GET /api/devices/{id}/history</c>: a page of the device's history, newest first, and its last status report.</summary>
public sealed record DeviceHistoryPage
{
    public required string DeviceId { get; init; }

    public required IReadOnlyList<DeviceHistoryEntry> Items { get; init; }

    /// <summary>The outbox the device last reported, if it ever did.</summary>
    public DeviceOutboxInfo? Outbox { get; init; }

    /// <summary>The device's Registration Tokens still in force (not replaced by a refresh, not expired), newest first.</summary>
    public IReadOnlyList<DeviceTokenInfo>? Tokens { get; init; }
}

/// <summary>A Registration Token of a device, as the console shows its expiry (never the token itself).</summary>
public sealed record DeviceTokenInfo
{
    /// <summary>The token's ID (its <c>jti</c>).</summary>
    public required string TokenId { get; init; }

    public DateTimeOffset IssuedAt { get; init; }

    public DateTimeOffset ExpiresAt { get; init; }
}

/// <summary>JSON of the console's API bodies (snake_case, like <see cref="AdminJsonContext"/>).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ServerEvent))]
[JsonSerializable(typeof(BulkDecisionRequest))]
[JsonSerializable(typeof(BulkDecisionResult))]
[JsonSerializable(typeof(FleetOverview))]
[JsonSerializable(typeof(ItemList<RefusalInfo>))]
[JsonSerializable(typeof(ItemList<DeviceOutboxInfo>))]
[JsonSerializable(typeof(DeviceOutboxInfo))]
[JsonSerializable(typeof(DeviceHistoryPage))]
public sealed partial class ConsoleJsonContext : JsonSerializerContext;
