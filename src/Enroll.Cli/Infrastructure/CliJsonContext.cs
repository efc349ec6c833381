using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Cli.Infrastructure;

/// <summary><c>enroll device register --json</c> output.</summary>
internal sealed record RegisterOutput
{
    public required string DeviceId { get; init; }

    public required string ClientId { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public required DateTimeOffset ExpiresAt { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? RegistrationTokenExpiresAt { get; init; }

    public bool RegistrationSkipped { get; init; }
}

/// <summary><c>enroll device status --json</c> output.</summary>
internal sealed record StatusOutput
{
    public required string State { get; init; }

    public required string StatePath { get; init; }

    public string? ClientId { get; init; }

    public string? DeviceId { get; init; }

    public string? OrgId { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? AccessTokenExpiresAt { get; init; }

    public bool AccessTokenValid { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? RegistrationTokenExpiresAt { get; init; }

    public string? PendingOperationId { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? RegisteredAt { get; init; }

    public OutboxStatusOutput? Outbox { get; init; }

    /// <summary>The agent's health, from the state folder's <c>health.json</c>.</summary>
    public required AgentStatusOutput Agent { get; init; }

    /// <summary>State databases that cannot be read (exit code 6); status never repairs or moves them.</summary>
    public IReadOnlyList<DamagedFileOutput>? Damaged { get; init; }
}

/// <summary>The <c>agent</c> part of <c>enroll device status --json</c>.</summary>
internal sealed record AgentStatusOutput
{
    /// <summary>True when the process that last wrote the health file still runs.</summary>
    public bool Running { get; init; }

    /// <summary>That process, when a device process ever ran in the folder.</summary>
    public int? Pid { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? UpdatedAt { get; init; }

    public IReadOnlyList<FaultOutput> Faults { get; init; } = [];
}

/// <summary>One fault in <see cref="AgentStatusOutput"/>.</summary>
internal sealed record FaultOutput
{
    public required string Component { get; init; }

    /// <summary>The fault kind in snake_case, such as <c>message_refused</c>.</summary>
    public required string Kind { get; init; }

    public required string Message { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset Since { get; init; }

    public int Occurrences { get; init; }
}

/// <summary>A state database <c>enroll device status</c> could not read.</summary>
internal sealed record DamagedFileOutput
{
    public required string File { get; init; }

    public required string Error { get; init; }
}

/// <summary>The outbox part of <c>enroll device status --json</c>.</summary>
internal sealed record OutboxStatusOutput
{
    public long Depth { get; init; }

    public long Bytes { get; init; }

    public double? OldestAgeSeconds { get; init; }

    public long Sent { get; init; }

    public long Acknowledged { get; init; }

    public long Dropped { get; init; }

    public long Quarantined { get; init; }

    /// <summary>Files and large messages with chunks still to send (or a file still being copied in).</summary>
    public long Transfers { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(RegisterOutput))]
[JsonSerializable(typeof(StatusOutput))]
[JsonSerializable(typeof(string[]))]
[JsonSerializable(typeof(Enroll.Device.DeviceCredentials))]
[JsonSerializable(typeof(HealthFile))]
[JsonSerializable(typeof(Enroll.Cli.Commands.UploadOutput))]
internal sealed partial class CliJsonContext : JsonSerializerContext;
