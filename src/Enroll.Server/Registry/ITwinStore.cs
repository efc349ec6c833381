using System.Data.Common;
using System.Text.Json.Nodes;
using Enroll.Protocol.Twins;

namespace Enroll.Server.Registry;

/// <summary>
/// The twins aggregate: each device's desired document (written by operators, versioned, with a history of the patches
/// so a device that was away can catch up) and reported document (written by the device, versioned, no history). Both
/// are JSON objects kept as compact JSON text and changed only by JSON Merge Patch (<see cref="JsonMergePatch"/>) within
/// <see cref="TwinLimits"/>. A device that was never patched has two empty documents at version 0; versions only grow.
/// </summary>
internal interface ITwinStore
{
    /// <summary>The twin of <paramref name="deviceId"/> (empty at version 0 when never patched), or null when the device does not exist.</summary>
    Task<TwinRecord?> GetTwinAsync(string deviceId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Applies <paramref name="patch"/> to the desired document in one transaction, the twin locked from the read to the
    /// write: refused with <see cref="DesiredPatchResult.VersionMismatch"/> (and the current version) when
    /// <paramref name="ifVersion"/> is given and differs, with <see cref="DesiredPatchResult.Refused"/> (and the reason)
    /// when the patch or the document it makes is over <see cref="TwinLimits"/>; else the document is stored at the next
    /// version and the patch appended to the history at that version. Nothing changes unless the result is
    /// <see cref="DesiredPatchResult.Applied"/>.
    /// </summary>
    Task<DesiredPatchOutcome> PatchDesiredAsync(string deviceId, JsonObject patch, long? ifVersion, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Applies <paramref name="patch"/> to the desired document of every active device <paramref name="filter"/> matches,
    /// walking the organisation's devices in Device ID order, <see cref="TwinFleet.BatchSize"/> to a transaction: each
    /// device gets its own next version and history row, as <see cref="PatchDesiredAsync"/> would give it. A device whose
    /// document the patch would take over <see cref="TwinLimits"/> is left unchanged and counted as refused. Devices
    /// registered or reported while the walk runs may or may not be included.
    /// </summary>
    Task<FleetPatchOutcome> PatchDesiredWhereAsync(TwinFilter filter, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// What a device at desired <paramref name="version"/> needs to catch up: the stored patches after it, in version order
    /// (none when it is current), or the whole document (<see cref="DesiredSince.IsWholeDocument"/>) when the history no
    /// longer reaches back to <c>version + 1</c> or <paramref name="version"/> is ahead of the store's (the device's state
    /// came from another database). Null when the device does not exist.
    /// </summary>
    Task<DesiredSince?> DesiredSinceAsync(string deviceId, long version, CancellationToken cancellationToken = default);

    /// <summary>Applies <paramref name="patch"/> to the reported document at the next reported version, within the same limits as desired; no history.</summary>
    Task<ReportedPatchOutcome> PatchReportedAsync(string deviceId, JsonObject patch, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes desired-history patches stored before <paramref name="olderThan"/>, but never a device's newest
    /// <paramref name="keepPerDevice"/>; returns how many. A device whose history was pruned past its version gets the
    /// whole document from <see cref="DesiredSinceAsync"/>.
    /// </summary>
    Task<int> PruneDesiredHistoryAsync(DateTimeOffset olderThan, int keepPerDevice, CancellationToken cancellationToken = default);
}

/// <summary>A device's twin: both documents as compact JSON object text, their versions, and the last instant either changed (null when never).</summary>
internal sealed record TwinRecord(string DeviceId, string Desired, long DesiredVersion, string Reported, long ReportedVersion, DateTimeOffset? UpdatedAt)
{
    /// <summary>The document of a twin never patched.</summary>
    public const string EmptyDocument = "{}";

    /// <summary>The twin of a device that was never patched.</summary>
    public static TwinRecord Empty(string deviceId) => new(deviceId, EmptyDocument, 0, EmptyDocument, 0, null);

    /// <summary>device_id, desired, desired_version, reported, reported_version, updated_at as both stores select them (a device without a twin row gives nulls: the empty twin).</summary>
    public static TwinRecord Read(DbDataReader r) => r.IsDBNull(1)
        ? Empty(r.GetString(0))
        : new(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetString(3), r.GetInt64(4), RegistryRows.FromUnixNullable(r, 5));

    /// <summary>The desired document, parsed.</summary>
    public JsonObject DesiredDocument() => ParseDocument(Desired);

    /// <summary>The reported document, parsed.</summary>
    public JsonObject ReportedDocument() => ParseDocument(Reported);

    /// <summary>A stored document, parsed (the stores keep only JSON objects).</summary>
    public static JsonObject ParseDocument(string json) =>
        JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException("a stored twin document is not a JSON object");

    /// <summary>
    /// <paramref name="patch"/> applied to <paramref name="document"/> as compact JSON text, or the reason it may not be
    /// (<see cref="TwinLimits.CheckPatch"/>, then <see cref="TwinLimits.CheckDocument"/> on the result).
    /// </summary>
    public static (string? Document, string? Refusal) Merge(string document, JsonObject patch)
    {
        if (TwinLimits.CheckPatch(patch) is { } patchRefusal)
        {
            return (null, patchRefusal);
        }

        var merged = (JsonObject)JsonMergePatch.Apply(ParseDocument(document), patch)!;
        return TwinLimits.CheckDocument(merged) is { } documentRefusal ? (null, documentRefusal) : (merged.ToJsonString(), null);
    }
}

/// <summary>How a desired patch ended.</summary>
internal enum DesiredPatchResult
{
    /// <summary>Stored at <see cref="DesiredPatchOutcome.Version"/>.</summary>
    Applied,

    /// <summary>The caller's expected version was not the current one (<see cref="DesiredPatchOutcome.Version"/>); nothing changed.</summary>
    VersionMismatch,

    /// <summary>Over a limit (<see cref="DesiredPatchOutcome.Reason"/>); nothing changed.</summary>
    Refused,

    /// <summary>No such device.</summary>
    NoDevice,
}

/// <summary>
/// A desired patch's outcome: the new version and document when applied, the current version on a mismatch, the reason
/// when refused.
/// </summary>
internal sealed record DesiredPatchOutcome(DesiredPatchResult Result, long Version = 0, string? Document = null, string? Reason = null)
{
    public static readonly DesiredPatchOutcome NoDevice = new(DesiredPatchResult.NoDevice);
}

/// <summary>How a reported patch ended.</summary>
internal enum ReportedPatchResult
{
    /// <summary>Stored at <see cref="ReportedPatchOutcome.Version"/>.</summary>
    Applied,

    /// <summary>Over a limit (<see cref="ReportedPatchOutcome.Reason"/>); nothing changed.</summary>
    Refused,

    /// <summary>No such device.</summary>
    NoDevice,
}

/// <summary>A reported patch's outcome: the new reported version and document when applied, the reason when refused.</summary>
internal sealed record ReportedPatchOutcome(ReportedPatchResult Result, long Version = 0, string? Document = null, string? Reason = null)
{
    public static readonly ReportedPatchOutcome NoDevice = new(ReportedPatchResult.NoDevice);
}

/// <summary>One stored desired patch: the version it made, its JSON text, when it was applied.</summary>
internal sealed record DesiredPatchRecord(long Version, string Patch, DateTimeOffset CreatedAt)
{
    /// <summary>version, patch, created_at as both stores select them.</summary>
    public static DesiredPatchRecord Read(DbDataReader r) => new(r.GetInt64(0), r.GetString(1), RegistryRows.FromUnix(r.GetInt64(2)));
}

/// <summary>
/// What a device needs to catch up to desired <see cref="Version"/>: the <see cref="Patches"/> to apply in order, or,
/// when <see cref="Document"/> is set, that whole document instead.
/// </summary>
internal sealed record DesiredSince(long Version, IReadOnlyList<DesiredPatchRecord> Patches, string? Document)
{
    public bool IsWholeDocument => Document is not null;

    /// <summary>
    /// The answer for a device at <paramref name="since"/> given the <paramref name="twin"/> and the stored patches after
    /// <paramref name="since"/> up to the twin's version (in order): the patches when they reach back to
    /// <c>since + 1</c> and up to the twin's version, else the whole document.
    /// </summary>
    public static DesiredSince From(TwinRecord twin, long since, IReadOnlyList<DesiredPatchRecord> patches)
    {
        if (since == twin.DesiredVersion)
        {
            return new(twin.DesiredVersion, [], null);
        }

        var complete = since < twin.DesiredVersion
            && patches.Count == twin.DesiredVersion - since
            && patches[0].Version == since + 1;
        return complete ? new(twin.DesiredVersion, patches, null) : new(twin.DesiredVersion, [], twin.Desired);
    }
}
