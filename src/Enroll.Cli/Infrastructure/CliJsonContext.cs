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
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(RegisterOutput))]
[JsonSerializable(typeof(StatusOutput))]
[JsonSerializable(typeof(string[]))]
internal sealed partial class CliJsonContext : JsonSerializerContext;
