using System.Text.Json.Serialization;
using Enroll.Protocol.Json;

namespace Enroll.Protocol.Messages;

/// <summary>
/// What a device reports of itself, published to <c>enroll/v1/devices/{device_id}/status</c> after it connects and when
/// its outbox changes (at most once per interval). The server keeps the latest report per device for the console.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record DeviceStatusRequest : IEnrollRequest
{
    /// <summary>The device's outbox. Required.</summary>
    public DeviceOutboxStatus? Outbox { get; init; }

    /// <summary>When the device took the snapshot (its own clock), if it says.</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? At { get; init; }

    /// <inheritdoc cref="RegistrationRequest.RequestId"/>
    public string? RequestId { get; init; }

    /// <summary>None: the topic names the device.</summary>
    string? IEnrollRequest.ClientId => null;
}

/// <summary>A device's outbox as it reports it in a <see cref="DeviceStatusRequest"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record DeviceOutboxStatus
{
    /// <summary>The largest count or byte total a report may carry (2^50); a larger one is refused as invalid.</summary>
    public const long MaxValue = 1L << 50;

    /// <summary>Messages (and chunks of transfers) waiting to be acknowledged by the broker. Required.</summary>
    public long? Pending { get; init; }

    /// <summary>Payload bytes of those messages. Required.</summary>
    public long? PendingBytes { get; init; }

    /// <summary>Age in seconds of the oldest waiting message; absent when nothing waits.</summary>
    public double? OldestAgeSeconds { get; init; }

    /// <summary>Rows held in the outbox's quarantine (undeliverable, kept with their reason). Required.</summary>
    public long? Quarantined { get; init; }

    /// <summary>Why this report is not acceptable, or null when it is.</summary>
    public string? Check()
    {
        if (Pending is not { } pending || PendingBytes is not { } bytes || Quarantined is not { } quarantined)
        {
            return "outbox.pending, outbox.pending_bytes and outbox.quarantined are required";
        }

        if (pending is < 0 or > MaxValue || bytes is < 0 or > MaxValue || quarantined is < 0 or > MaxValue)
        {
            return $"outbox counts must be 0 to {MaxValue}";
        }

        if (OldestAgeSeconds is { } age && (double.IsNaN(age) || age < 0 || age > 100 * 365.25 * 86400))
        {
            return "outbox.oldest_age_seconds must be 0 to 100 years";
        }

        return pending == 0 && OldestAgeSeconds is > 0
            ? "outbox.oldest_age_seconds is only for an outbox with pending messages"
            : null;
    }
}

/// <summary>The answer to a <see cref="DeviceStatusRequest"/>: the report is stored.</summary>
public sealed record DeviceStatusResponse : IEnrollResponse
{
    /// <summary>When the server stored the report (its clock).</summary>
    [JsonConverter(typeof(UtcTimestampConverter))]
    public DateTimeOffset? ReceivedAt { get; init; }

    /// <inheritdoc />
    public string? RequestId { get; init; }

    /// <inheritdoc />
    public ErrorBody? Error { get; init; }
}
