using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Admin;

/// <summary>Body of <c>POST /api/devices/{id}/commands</c>.</summary>
public sealed record SendCommandRequest
{
    /// <summary>The command's name (the device's handler). Required.</summary>
    public string? Name { get; init; }

    /// <summary>Its input, any JSON value; at most 64 KiB.</summary>
    public JsonNode? Payload { get; init; }

    /// <summary>Time to live: a duration (<c>"30s"</c>, <c>"15m"</c>, <c>"1h"</c>, <c>"7d"</c>) or a number of seconds; 1 s to 7 d, 1 h when absent.</summary>
    public JsonElement? Ttl { get; init; }
}

/// <summary>A command as the admin API shows it.</summary>
public sealed record CommandInfo
{
    public string? CommandId { get; init; }

    public string? DeviceId { get; init; }

    public string? Name { get; init; }

    public JsonNode? Payload { get; init; }

    /// <summary>One of <see cref="Messages.CommandStatuses.All"/>.</summary>
    public string? State { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? CreatedAt { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ExpiresAt { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? SentAt { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>The device's result payload.</summary>
    public JsonNode? Result { get; init; }

    /// <summary>The device's result message (why it failed or was rejected).</summary>
    public string? Message { get; init; }

    /// <summary>The fleet rollout that queued it, if one did.</summary>
    public string? RolloutId { get; init; }
}

/// <summary>Body of <c>POST /api/commands/rollouts</c>: one command for every device of an organisation that matches <see cref="Where"/>, at a rate.</summary>
public sealed record CreateRolloutRequest
{
    /// <summary>The organisation. Required.</summary>
    public string? Org { get; init; }

    /// <summary>Keys <c>metadata.NAME</c> or <c>reported.NAME</c> with the value (as text) a device must have; every one must match.</summary>
    public Dictionary<string, string>? Where { get; init; }

    /// <summary>The command's name. Required.</summary>
    public string? Name { get; init; }

    /// <summary>The command's input.</summary>
    public JsonNode? Payload { get; init; }

    /// <summary>Each command's time to live from when it is queued, as for one device.</summary>
    public JsonElement? Ttl { get; init; }

    /// <summary>Devices per minute, 1 to 10,000 (60 when absent).</summary>
    public int? RatePerMinute { get; init; }
}

/// <summary>A fleet command and how far it got.</summary>
public sealed record RolloutInfo
{
    public string? RolloutId { get; init; }

    public string? Org { get; init; }

    public Dictionary<string, string>? Where { get; init; }

    public string? Name { get; init; }

    public JsonNode? Payload { get; init; }

    public int? RatePerMinute { get; init; }

    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>Devices that matched the filter when the rollout was created.</summary>
    public int? Total { get; init; }

    /// <summary>Devices whose turn has not come yet.</summary>
    public int? Waiting { get; init; }

    /// <summary>Devices skipped because they had 100 outstanding commands when their turn came.</summary>
    public int? Refused { get; init; }

    /// <summary>The rollout's commands by state.</summary>
    public Dictionary<string, int>? States { get; init; }

    /// <summary>True when no device is waiting and every command is final.</summary>
    public bool? Done { get; init; }
}

/// <summary>Source-generated JSON for the commands part of the admin API (snake_case, nulls left out, as <see cref="AdminJsonContext"/>).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SendCommandRequest))]
[JsonSerializable(typeof(CommandInfo))]
[JsonSerializable(typeof(ItemList<CommandInfo>))]
[JsonSerializable(typeof(CreateRolloutRequest))]
[JsonSerializable(typeof(RolloutInfo))]
public sealed partial class CommandJsonContext : JsonSerializerContext;
