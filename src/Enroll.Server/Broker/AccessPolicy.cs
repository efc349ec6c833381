using Enroll.Protocol;
using Enroll.Protocol.Topics;

namespace Enroll.Server.Broker;

/// <summary>
/// Who may publish and subscribe where on the embedded broker (SPEC §4.1). Every client may publish requests and read
/// the server's keys and its own <c>enroll/v1/clients/{its client ID}/...</c> topics; a client authenticated as a device
/// may also publish and subscribe under <c>enroll/v1/devices/{its Device ID}/...</c>. Nothing else: a filter is allowed
/// only when every topic it can match lies inside those namespaces, so <c>#</c>, <c>enroll/v1/devices/+/...</c> and
/// <c>$SYS/#</c> are refused.
/// </summary>
internal static class AccessPolicy
{
    public static bool CanPublish(string topic, string clientId, string? deviceId) =>
        EnrollTopics.IsOpenRequestTopic(topic)
        || (deviceId is not null && IsInside(topic, EnrollTopics.DeviceNamespace(deviceId)))
        || (EnrollIdentifiers.IsValid(clientId) && IsInside(topic, EnrollTopics.ClientNamespace(clientId)));

    public static bool CanSubscribe(string filter, string clientId, string? deviceId) =>
        filter == EnrollTopics.ServerKeys
        || (EnrollIdentifiers.IsValid(clientId) && IsInside(filter, EnrollTopics.ClientNamespace(clientId)))
        || (deviceId is not null && EnrollIdentifiers.IsValid(deviceId) && IsInside(filter, EnrollTopics.DeviceNamespace(deviceId)));

    /// <summary>
    /// True when <paramref name="topicOrFilter"/> is the namespace itself or lies below it. The namespace part is compared
    /// literally, so a wildcard can only appear after it.
    /// </summary>
    private static bool IsInside(string topicOrFilter, string namespacePrefix) =>
        topicOrFilter.StartsWith(namespacePrefix, StringComparison.Ordinal)
        || string.Equals(topicOrFilter, namespacePrefix.TrimEnd('/'), StringComparison.Ordinal);
}
