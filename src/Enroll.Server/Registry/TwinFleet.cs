using System.Text.Json;
using System.Text.Json.Nodes;

namespace Enroll.Server.Registry;

/// <summary>
/// Which devices a fleet desired patch (<see cref="ITwinStore.PatchDesiredWhereAsync"/>) is for: the active devices of
/// <see cref="OrgId"/> that meet every one of <see cref="Conditions"/> (none: all of them). Revoked devices are never
/// patched by a fleet patch.
/// </summary>
internal sealed record TwinFilter(string OrgId, IReadOnlyList<TwinCondition> Conditions)
{
    /// <summary>True when a device with <paramref name="metadataJson"/> (its registration metadata, null when none) and the reported document <paramref name="reportedJson"/> meets every condition.</summary>
    public bool Matches(string? metadataJson, string reportedJson)
    {
        if (Conditions.Count == 0)
        {
            return true;
        }

        JsonNode? metadata = null, reported = null;
        foreach (var condition in Conditions)
        {
            var document = condition.Source == TwinConditionSource.Metadata
                ? metadata ??= metadataJson is null ? new JsonObject() : JsonNode.Parse(metadataJson)
                : reported ??= JsonNode.Parse(reportedJson);
            if (!condition.Matches(document))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The conditions as the operator wrote them, for logs.</summary>
    public override string ToString() => Conditions.Count == 0 ? "(every device)" : string.Join(" and ", Conditions);
}

/// <summary>The document a <see cref="TwinCondition"/> looks in.</summary>
internal enum TwinConditionSource
{
    /// <summary>The metadata the device registered with (<see cref="DeviceRecord.MetadataJson"/>).</summary>
    Metadata,

    /// <summary>The device's reported twin document.</summary>
    Reported,
}

/// <summary>
/// <c>KEY=VALUE</c> where KEY is a dotted path into the device's metadata (<c>metadata.site</c>) or reported document
/// (<c>reported.firmware</c>, <c>reported.net.kind</c>): met when the member at that path exists and is the string
/// VALUE, or a number, <c>true</c>, <c>false</c> or <c>null</c> whose JSON text is VALUE (<c>reported.rate=5</c> meets
/// <c>{"rate": 5}</c> and <c>{"rate": "5"}</c>).
/// </summary>
internal sealed record TwinCondition(TwinConditionSource Source, IReadOnlyList<string> Path, string Value)
{
    /// <summary>What a valid condition looks like, for error messages.</summary>
    public const string Rule = "KEY=VALUE where KEY is metadata.NAME or reported.NAME (a dotted path, e.g. reported.firmware=1.4.2)";

    /// <summary>Parses <c>KEY=VALUE</c>; null (and the reason) when it is not one.</summary>
    public static TwinCondition? Parse(string text, out string? problem)
    {
        ArgumentNullException.ThrowIfNull(text);
        problem = null;
        var equals = text.IndexOf('=', StringComparison.Ordinal);
        if (equals <= 0)
        {
            problem = $"'{text}' is not {Rule}";
            return null;
        }

        var path = text[..equals].Split('.');
        TwinConditionSource? source = path[0] switch
        {
            "metadata" => TwinConditionSource.Metadata,
            "reported" => TwinConditionSource.Reported,
            _ => null,
        };
        if (source is null || path.Length < 2 || path.Skip(1).Any(string.IsNullOrEmpty))
        {
            problem = $"'{text[..equals]}' is not a key: expected {Rule}";
            return null;
        }

        return new TwinCondition(source.Value, path[1..], text[(equals + 1)..]);
    }

    /// <summary>True when <paramref name="document"/> has a member at <see cref="Path"/> equal to <see cref="Value"/>.</summary>
    public bool Matches(JsonNode? document)
    {
        var node = document;
        foreach (var name in Path)
        {
            if (node is not JsonObject obj || !obj.TryGetPropertyValue(name, out node))
            {
                return false;
            }
        }

        return node switch
        {
            null => Value == "null",
            JsonValue value when value.GetValueKind() == JsonValueKind.String => value.GetValue<string>() == Value,
            JsonValue value => value.ToJsonString() == Value,
            _ => false,
        };
    }

    public override string ToString() => $"{Source.ToString().ToLowerInvariant()}.{string.Join('.', Path)}={Value}";
}

/// <summary>One device a fleet patch changed, and the desired version it made.</summary>
internal sealed record FleetPatched(string DeviceId, long Version);

/// <summary>
/// What a fleet desired patch did: the devices it patched (each at its own new version), how many matched but were
/// refused because the patch would take their document over <see cref="Protocol.Twins.TwinLimits"/>, and the first
/// such reason.
/// </summary>
internal sealed record FleetPatchOutcome(IReadOnlyList<FleetPatched> Touched, int Refused, string? FirstRefusal);

/// <summary>How the stores walk a fleet: devices in Device ID order, this many to a transaction.</summary>
internal static class TwinFleet
{
    public const int BatchSize = 200;
}
