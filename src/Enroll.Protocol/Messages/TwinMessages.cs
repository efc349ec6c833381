using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Enroll.Protocol.Messages;

/// <summary>
/// Asks for the desired state a device missed, published to <c>enroll/v1/devices/{device_id}/twin/get</c> (SPEC §2.5).
/// The topic names the device; the broker vouches that only that device publishes there.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record TwinGetRequest : IEnrollRequest
{
    /// <summary>The last desired version the device applied; 0 (or absent) when it has applied none.</summary>
    public long? DesiredVersion { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }

    /// <summary>None: the topic names the device.</summary>
    string? IEnrollRequest.ClientId => null;
}

/// <summary>
/// The answer to a <see cref="TwinGetRequest"/>: the desired patches after the device's version, in order, or, when the
/// server no longer keeps them all, the whole desired <see cref="Document"/>; and the reported state as the server holds it.
/// </summary>
public sealed record TwinGetResponse : IEnrollResponse
{
    /// <summary>The server's current desired version.</summary>
    public long? DesiredVersion { get; init; }

    /// <summary>The patches with versions after the one asked for, oldest first; absent when <see cref="Document"/> is set.</summary>
    public IReadOnlyList<TwinDesiredPatch>? Patches { get; init; }

    /// <summary>The whole desired document at <see cref="DesiredVersion"/>, when the patches are not all kept; it replaces the device's.</summary>
    public JsonObject? Document { get; init; }

    /// <summary>The server's reported version.</summary>
    public long? ReportedVersion { get; init; }

    /// <summary>The reported document as the server holds it.</summary>
    public JsonObject? Reported { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}

/// <summary>
/// One desired patch with the version it makes: pushed by the server to <c>enroll/v1/devices/{device_id}/twin/desired</c>
/// when an operator patches the twin, and listed in a <see cref="TwinGetResponse"/>.
/// </summary>
public sealed record TwinDesiredPatch
{
    /// <summary>The desired version after this patch; versions only grow, one at a time.</summary>
    public long Version { get; init; }

    /// <summary>A JSON merge patch (RFC 7396) to the desired document.</summary>
    public JsonObject? Patch { get; init; }
}

/// <summary>
/// Merges a patch into the device's reported state, published to <c>enroll/v1/devices/{device_id}/twin/report</c>
/// (SPEC §2.5); acknowledged once committed.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record TwinReportRequest : IEnrollRequest
{
    /// <summary>A JSON merge patch (RFC 7396) to the reported document. Required.</summary>
    public JsonObject? Patch { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }

    /// <summary>None: the topic names the device.</summary>
    string? IEnrollRequest.ClientId => null;
}

/// <summary>The answer to a <see cref="TwinReportRequest"/>: the reported version the patch made.</summary>
public sealed record TwinReportResponse : IEnrollResponse
{
    /// <summary>The reported version after the patch.</summary>
    public long? ReportedVersion { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}
