using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Enroll.Protocol.Admin;

/// <summary>
/// A device twin as <c>GET /api/devices/{id}/twin</c> answers it (and <c>PATCH .../twin/desired</c> after a patch); the
/// answer's <c>ETag</c> is <c>"d{desired_version}-r{reported_version}"</c>.
/// </summary>
public sealed record TwinInfo
{
    public string? DeviceId { get; init; }

    /// <summary>The desired document, written by operators.</summary>
    public JsonObject? Desired { get; init; }

    /// <summary>The desired version: the number of desired patches applied; 0 when never patched.</summary>
    public long DesiredVersion { get; init; }

    /// <summary>The reported document, written by the device.</summary>
    public JsonObject? Reported { get; init; }

    /// <summary>The reported version: the number of reported patches applied; 0 when the device never reported.</summary>
    public long ReportedVersion { get; init; }

    /// <summary>When either document last changed; absent when neither ever did.</summary>
    public DateTimeOffset? UpdatedAt { get; init; }
}

/// <summary>
/// Body of <c>PATCH /api/twins/desired</c> when the query names no <c>org</c>: the organisation, an optional condition
/// (<c>metadata.KEY=VALUE</c> or <c>reported.KEY=VALUE</c>), and the merge patch.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record FleetTwinPatchRequest
{
    public string? Org { get; init; }

    public string? Where { get; init; }

    public JsonObject? Patch { get; init; }
}

/// <summary>What a fleet desired patch did: devices patched, devices refused (the patch would take their document over the twin limits) and the first reason.</summary>
public sealed record FleetTwinPatchResult
{
    public int Touched { get; init; }

    public int Refused { get; init; }

    /// <summary>Why the first refused device was refused; absent when none was.</summary>
    public string? Refusal { get; init; }
}

/// <summary>Source-generated JSON for the twin routes of the admin API (the conventions of <see cref="AdminJsonContext"/>).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(TwinInfo))]
[JsonSerializable(typeof(FleetTwinPatchRequest))]
[JsonSerializable(typeof(FleetTwinPatchResult))]
public sealed partial class TwinAdminJsonContext : JsonSerializerContext;
