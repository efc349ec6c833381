using System.Collections.Frozen;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;

namespace Enroll.Protocol.Requests;

/// <summary>
/// The request types of protocol v1, declared once. A new request type is a line here (with its message records in
/// <c>Messages/</c> and their entries in <see cref="EnrollJsonContext"/>); the server refuses to start without exactly
/// one handler for each, and the topic lists and access rules follow from this table.
/// </summary>
public static class EnrollRequests
{
    /// <summary>Registration (SPEC §2.1).</summary>
    public static EnrollRequest<RegistrationRequest, RegistrationResponse> Register { get; } = new(
        EnrollTopics.Register, "registration", EnrollJsonContext.Default.RegistrationRequest, EnrollJsonContext.Default.RegistrationResponse);

    /// <summary>Starts a provisioning operation (SPEC §2.2).</summary>
    public static EnrollRequest<ProvisioningInitRequest, ProvisioningInitResponse> ProvisioningInit { get; } = new(
        EnrollTopics.ProvisioningInit, "provisioning_init", EnrollJsonContext.Default.ProvisioningInitRequest, EnrollJsonContext.Default.ProvisioningInitResponse);

    /// <summary>Asks for the outcome of a provisioning operation (SPEC §2.2).</summary>
    public static EnrollRequest<ProvisioningCompleteRequest, ProvisioningCompleteResponse> ProvisioningComplete { get; } = new(
        EnrollTopics.ProvisioningComplete, "provisioning_complete", EnrollJsonContext.Default.ProvisioningCompleteRequest, EnrollJsonContext.Default.ProvisioningCompleteResponse);

    /// <summary>Exchanges a Registration Token for a new one (SPEC §2.3).</summary>
    public static EnrollRequest<TokenRefreshRequest, TokenRefreshResponse> TokensRefresh { get; } = new(
        EnrollTopics.TokensRefresh, "token_refresh", EnrollJsonContext.Default.TokenRefreshRequest, EnrollJsonContext.Default.TokenRefreshResponse);

    /// <summary>Asks for the desired twin state the device missed (SPEC §2.5).</summary>
    public static EnrollRequest<TwinGetRequest, TwinGetResponse> TwinGet { get; } = new(
        EnrollTopics.DeviceRequest("twin/get"), "twin_get", EnrollJsonContext.Default.TwinGetRequest, EnrollJsonContext.Default.TwinGetResponse);

    /// <summary>Merges a patch into the device's reported twin state (SPEC §2.5).</summary>
    public static EnrollRequest<TwinReportRequest, TwinReportResponse> TwinReport { get; } = new(
        EnrollTopics.DeviceRequest("twin/report"), "twin_report", EnrollJsonContext.Default.TwinReportRequest, EnrollJsonContext.Default.TwinReportResponse);

    /// <summary>Asks for the device's queued commands (SPEC §2.6).</summary>
    public static EnrollRequest<CommandsPendingRequest, CommandsPendingResponse> CommandsPending { get; } = new(
        EnrollTopics.DeviceRequest("commands/pending"), "commands_pending", EnrollJsonContext.Default.CommandsPendingRequest, EnrollJsonContext.Default.CommandsPendingResponse);

    /// <summary>Records a device's result for a command (SPEC §2.6).</summary>
    public static EnrollRequest<CommandResultRequest, CommandResultResponse> CommandResult { get; } = new(
        EnrollTopics.DeviceRequest("commands/result"), "command_result", EnrollJsonContext.Default.CommandResultRequest, EnrollJsonContext.Default.CommandResultResponse);

    /// <summary>Asks what the server holds of one of the device's chunked transfers, to resume it (SPEC §2.7).</summary>
    public static EnrollRequest<TransferStatusRequest, TransferStatusResponse> TransferStatus { get; } = new(
        EnrollTopics.DeviceRequest("transfers/status"), "transfer_status", EnrollJsonContext.Default.TransferStatusRequest, EnrollJsonContext.Default.TransferStatusResponse);

    /// <summary>Reports the device's own state (its outbox) for the console; the server keeps the latest (issue 15).</summary>
    public static EnrollRequest<DeviceStatusRequest, DeviceStatusResponse> DeviceStatus { get; } = new(
        EnrollTopics.DeviceRequest("status"), "device_status", EnrollJsonContext.Default.DeviceStatusRequest, EnrollJsonContext.Default.DeviceStatusResponse);

    /// <summary>Every request type, in the order of the protocol description.</summary>
    public static IReadOnlyList<EnrollRequest> All { get; } = [Register, ProvisioningInit, ProvisioningComplete, TokensRefresh, TwinGet, TwinReport, CommandsPending, CommandResult, TransferStatus, DeviceStatus];

    /// <summary>The requests any client may publish, signed in or not (their topics are fixed).</summary>
    public static IReadOnlyList<EnrollRequest> Open { get; } = [.. All.Where(r => !r.IsDeviceScoped)];

    /// <summary>The requests a device publishes under its own namespace (<see cref="EnrollRequest.IsDeviceScoped"/>).</summary>
    public static IReadOnlyList<EnrollRequest> DeviceScoped { get; } = [.. All.Where(r => r.IsDeviceScoped)];

    private static readonly FrozenDictionary<string, EnrollRequest> ByTopic = Open.ToFrozenDictionary(r => r.Topic, StringComparer.Ordinal);

    private static readonly FrozenDictionary<string, EnrollRequest> BySuffix = DeviceScoped.ToFrozenDictionary(r => r.DeviceSuffix!, StringComparer.Ordinal);

    /// <summary>The request type published to <paramref name="topic"/>, if any.</summary>
    public static bool TryFind(string topic, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out EnrollRequest? request) =>
        TryFind(topic, out request, out _);

    /// <summary>
    /// The request type published to <paramref name="topic"/>, if any, and for a device-scoped one the Device ID the topic
    /// names (null for the others).
    /// </summary>
    public static bool TryFind(string topic, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out EnrollRequest? request, out string? deviceId)
    {
        ArgumentNullException.ThrowIfNull(topic);
        deviceId = null;
        if (ByTopic.TryGetValue(topic, out request))
        {
            return true;
        }

        const string prefix = "enroll/v1/devices/";
        if (!topic.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = topic.AsSpan(prefix.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0 || !EnrollIdentifiers.IsValid(rest[..slash])
            || !BySuffix.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(rest[(slash + 1)..], out request))
        {
            request = null;
            return false;
        }

        deviceId = rest[..slash].ToString();
        return true;
    }
}
