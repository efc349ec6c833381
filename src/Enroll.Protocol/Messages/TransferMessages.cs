using System.Text.Json.Serialization;

namespace Enroll.Protocol.Messages;

/// <summary>
/// Asks what the server holds of one of the device's transfers, published to
/// <c>enroll/v1/devices/{device_id}/transfers/status</c> (SPEC §2.7). A device asks before it resumes a transfer after a
/// reconnect or restart, and sends only the chunks the server does not have.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record TransferStatusRequest : IEnrollRequest
{
    /// <summary>The transfer asked about. Required.</summary>
    public string? TransferId { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }

    /// <summary>None: the topic names the device.</summary>
    string? IEnrollRequest.ClientId => null;
}

/// <summary>The answer to a <see cref="TransferStatusRequest"/>.</summary>
public sealed record TransferStatusResponse : IEnrollResponse
{
    /// <summary>The transfer asked about.</summary>
    public string? TransferId { get; init; }

    /// <summary>One of <see cref="Transfers.TransferStates"/>.</summary>
    public string? State { get; init; }

    /// <summary>How many chunks the transfer has, when the server knows it.</summary>
    public int? ChunkCount { get; init; }

    /// <summary>
    /// The chunk indexes the server holds, as ranges <c>[first, last]</c> (both included), in order; every chunk for a
    /// complete transfer, none for an unknown one.
    /// </summary>
    public IReadOnlyList<int[]>? Received { get; init; }

    /// <summary>Why the transfer was refused (state <c>refused</c>).</summary>
    public string? Reason { get; init; }

    /// <summary>The stored file's ID (a complete file transfer).</summary>
    public string? FileId { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}
