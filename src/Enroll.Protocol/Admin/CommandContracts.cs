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

/// <summary>Source-generated JSON for the commands part of the admin API (snake_case, nulls left out, as <see cref="AdminJsonContext"/>).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SendCommandRequest))]
[JsonSerializable(typeof(CommandInfo))]
[JsonSerializable(typeof(ItemList<CommandInfo>))]
public sealed partial class CommandJsonContext : JsonSerializerContext;
