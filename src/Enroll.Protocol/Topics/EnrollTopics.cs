using Enroll.Protocol.Requests;

namespace Enroll.Protocol.Topics;

/// <summary>
/// The MQTT topics of wire protocol v1. Every topic lives under <c>enroll/v1/</c>.
/// </summary>
public static class EnrollTopics
{
    /// <summary>The prefix shared by every topic of protocol v1.</summary>
    public const string Root = "enroll/v1/";

    /// <summary>Registration requests (SPEC §2.1).</summary>
    public const string Register = "enroll/v1/register";

    /// <summary>Starts a provisioning operation (SPEC §2.2).</summary>
    public const string ProvisioningInit = "enroll/v1/provisioning/init";

    /// <summary>Asks for the outcome of a provisioning operation (SPEC §2.2).</summary>
    public const string ProvisioningComplete = "enroll/v1/provisioning/complete";

    /// <summary>Exchanges a Registration Token for a new one (SPEC §2.3).</summary>
    public const string TokensRefresh = "enroll/v1/tokens/refresh";

    /// <summary>Retained message with the server's public keys as a JSON Web Key Set.</summary>
    public const string ServerKeys = "enroll/v1/server/keys";

    /// <summary>
    /// The subscription filters that receive every request of <see cref="EnrollRequests.All"/>: the fixed topics, and
    /// <c>enroll/v1/devices/+/...</c> for the device-scoped ones.
    /// </summary>
    public static IReadOnlyList<string> RequestFilters { get; } = [.. EnrollRequests.All.Select(r => r.Filter)];

    /// <summary>Returns true when <paramref name="topic"/> is the topic of one of <see cref="EnrollRequests.All"/>, for any device.</summary>
    public static bool IsRequestTopic(string topic) => EnrollRequests.TryFind(topic, out _);

    /// <summary>Returns true when <paramref name="topic"/> is the fixed topic of one of <see cref="EnrollRequests.Open"/>, which every client may publish.</summary>
    public static bool IsOpenRequestTopic(string topic) => EnrollRequests.TryFind(topic, out var request) && !request.IsDeviceScoped;

    /// <summary>The topic template of a device-scoped request: <c>enroll/v1/devices/{device_id}/</c> and <paramref name="suffix"/>.</summary>
    public static string DeviceRequest(string suffix) => "enroll/v1/devices/" + EnrollRequest.DeviceIdPlaceholder + "/" + suffix;

    /// <summary>Where the server pushes desired twin patches to a device (SPEC §2.5).</summary>
    public static string DeviceTwinDesired(string deviceId) => $"enroll/v1/devices/{deviceId}/twin/desired";

    /// <summary>Where the server publishes commands for a device (SPEC §2.6).</summary>
    public static string DeviceCommands(string deviceId) => $"enroll/v1/devices/{deviceId}/commands";

    /// <summary>The response topic of a device that has a Device ID: <c>enroll/v1/devices/{deviceId}/responses</c>.</summary>
    public static string DeviceResponses(string deviceId) => $"enroll/v1/devices/{deviceId}/responses";

    /// <summary>The response topic of a client without a Device ID: <c>enroll/v1/clients/{clientId}/responses</c>.</summary>
    public static string ClientResponses(string clientId) => $"enroll/v1/clients/{clientId}/responses";

    /// <summary>The namespace a registered device owns: <c>enroll/v1/devices/{deviceId}/</c>.</summary>
    public static string DeviceNamespace(string deviceId) => $"enroll/v1/devices/{deviceId}/";

    /// <summary>The namespace a client owns by its MQTT client ID: <c>enroll/v1/clients/{clientId}/</c>.</summary>
    public static string ClientNamespace(string clientId) => $"enroll/v1/clients/{clientId}/";

    /// <summary>The topic a device publishes messages of one stream to.</summary>
    public static string DeviceMessages(string deviceId, string stream) => $"enroll/v1/devices/{deviceId}/messages/{stream}";

    /// <summary>The topic a device publishes the chunks of its files to (SPEC §2.7): <c>enroll/v1/devices/{deviceId}/files</c>.</summary>
    public static string DeviceFiles(string deviceId) => $"enroll/v1/devices/{deviceId}/files";

    /// <summary>Parses <c>enroll/v1/devices/{deviceId}/files</c>; returns false for any other topic.</summary>
    public static bool TryParseDeviceFileTopic(string topic, out string deviceId)
    {
        deviceId = string.Empty;
        const string prefix = "enroll/v1/devices/";
        const string suffix = "/files";
        if (!topic.StartsWith(prefix, StringComparison.Ordinal) || !topic.EndsWith(suffix, StringComparison.Ordinal) || topic.Length <= prefix.Length + suffix.Length)
        {
            return false;
        }

        var id = topic.AsSpan(prefix.Length, topic.Length - prefix.Length - suffix.Length);
        if (!EnrollIdentifiers.IsValid(id))
        {
            return false;
        }

        deviceId = id.ToString();
        return true;
    }

    /// <summary>
    /// The conventional response topic (used when the request carries no MQTT 5 Response Topic, as with MQTT 3.1.1):
    /// the device's topic when the request carries a Device ID, else the client's topic.
    /// </summary>
    public static string ConventionalResponseTopic(string? deviceId, string clientId) =>
        string.IsNullOrEmpty(deviceId) ? ClientResponses(clientId) : DeviceResponses(deviceId);

    /// <summary>
    /// True when <paramref name="topic"/> is a response topic the server may answer on for a request with these
    /// identifiers: the client's own topic, or the device's own topic when the request names a Device ID.
    /// </summary>
    public static bool IsAllowedResponseTopic(string topic, string? deviceId, string? clientId) =>
        (!string.IsNullOrEmpty(clientId) && string.Equals(topic, ClientResponses(clientId), StringComparison.Ordinal)) ||
        (!string.IsNullOrEmpty(deviceId) && string.Equals(topic, DeviceResponses(deviceId), StringComparison.Ordinal));

    /// <summary>
    /// True when <paramref name="topic"/> has the shape of a response topic (<c>enroll/v1/clients/X/responses</c> or
    /// <c>enroll/v1/devices/X/responses</c> with a valid identifier X). Used to answer requests whose payload could not be read.
    /// </summary>
    public static bool IsResponseTopicShape(string topic)
    {
        if (!topic.StartsWith(Root, StringComparison.Ordinal) || !topic.EndsWith("/responses", StringComparison.Ordinal))
        {
            return false;
        }

        var middle = topic.AsSpan(Root.Length, topic.Length - Root.Length - "/responses".Length);
        var slash = middle.IndexOf('/');
        if (slash <= 0)
        {
            return false;
        }

        var kind = middle[..slash];
        var id = middle[(slash + 1)..];
        return (kind.SequenceEqual("clients") || kind.SequenceEqual("devices")) && EnrollIdentifiers.IsValid(id);
    }

    /// <summary>
    /// Parses <c>enroll/v1/devices/{deviceId}/messages/{stream}</c>; returns false for any other topic.
    /// </summary>
    public static bool TryParseDeviceMessageTopic(string topic, out string deviceId, out string stream)
    {
        deviceId = string.Empty;
        stream = string.Empty;
        const string prefix = "enroll/v1/devices/";
        if (!topic.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = topic.AsSpan(prefix.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0)
        {
            return false;
        }

        var id = rest[..slash];
        rest = rest[(slash + 1)..];
        const string messages = "messages/";
        if (!rest.StartsWith(messages, StringComparison.Ordinal))
        {
            return false;
        }

        var streamSpan = rest[messages.Length..];
        if (!EnrollIdentifiers.IsValid(id) || !EnrollIdentifiers.IsValidStream(streamSpan))
        {
            return false;
        }

        deviceId = id.ToString();
        stream = streamSpan.ToString();
        return true;
    }
}
