using System.Text.Json.Serialization.Metadata;
using Enroll.Protocol.Messages;

namespace Enroll.Protocol.Requests;

/// <summary>
/// One request type of protocol v1: the topic it is published to, its name in logs and metrics, and how its request and
/// response are read and written. The server's routes, the device's request sender, the topic lists and the broker access
/// rules are all derived from these declarations (<see cref="EnrollRequests"/>).
/// </summary>
public abstract class EnrollRequest
{
    /// <summary>The place of the Device ID in the topic of a device-scoped request.</summary>
    public const string DeviceIdPlaceholder = "{device_id}";

    private const string DeviceNamespacePrefix = "enroll/v1/devices/" + DeviceIdPlaceholder + "/";

    private protected EnrollRequest(string topic, string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ArgumentException.ThrowIfNullOrEmpty(name);
        Topic = topic;
        Name = name;
        if (topic.Contains(DeviceIdPlaceholder, StringComparison.Ordinal))
        {
            if (!topic.StartsWith(DeviceNamespacePrefix, StringComparison.Ordinal) || topic.Length == DeviceNamespacePrefix.Length
                || topic.AsSpan(DeviceNamespacePrefix.Length).ContainsAny('+', '#', '{'))
            {
                throw new ArgumentException($"a device-scoped request's topic is '{DeviceNamespacePrefix}' and a fixed suffix", nameof(topic));
            }

            DeviceSuffix = topic[DeviceNamespacePrefix.Length..];
        }
    }

    /// <summary>
    /// The topic the request is published to, under <c>enroll/v1/</c>; for a device-scoped request a template with
    /// <see cref="DeviceIdPlaceholder"/> (<see cref="TopicFor"/> fills it in).
    /// </summary>
    public string Topic { get; }

    /// <summary>
    /// True when the request is published under the sending device's own namespace
    /// (<c>enroll/v1/devices/{device_id}/...</c>): the topic names the device, the broker lets only that device publish
    /// there, and the answer goes to <c>enroll/v1/devices/{device_id}/responses</c>. Such a request carries no client ID
    /// and no token.
    /// </summary>
    public bool IsDeviceScoped => DeviceSuffix is not null;

    /// <summary>What follows <c>enroll/v1/devices/{device_id}/</c> in a device-scoped request's topic; null otherwise.</summary>
    public string? DeviceSuffix { get; }

    /// <summary>
    /// The subscription filter that receives every request of this type: the topic itself, or for a device-scoped request
    /// the topic with <c>+</c> in place of the Device ID.
    /// </summary>
    public string Filter => IsDeviceScoped ? Topic.Replace(DeviceIdPlaceholder, "+", StringComparison.Ordinal) : Topic;

    /// <summary>The topic <paramref name="deviceId"/> publishes this request to.</summary>
    public string TopicFor(string? deviceId)
    {
        if (!IsDeviceScoped)
        {
            return Topic;
        }

        if (!EnrollIdentifiers.IsValid(deviceId))
        {
            throw new ArgumentException($"a device-scoped request needs a Device ID that is {EnrollIdentifiers.Rule}", nameof(deviceId));
        }

        return Topic.Replace(DeviceIdPlaceholder, deviceId, StringComparison.Ordinal);
    }

    /// <summary>A short name for logs and metrics (<c>registration</c>, <c>token_refresh</c>, ...).</summary>
    public string Name { get; }

    /// <summary>
    /// True when the request may name the sender's Device ID (its type is an <see cref="IDeviceRequest"/>): its answer
    /// may then go to <c>enroll/v1/devices/{device_id}/responses</c>, else only to the client's topic.
    /// </summary>
    public abstract bool NamesDevice { get; }

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({Topic})";
}

/// <summary>A request type with its message types and their source-generated JSON metadata.</summary>
/// <typeparam name="TRequest">The request message.</typeparam>
/// <typeparam name="TResponse">The response message.</typeparam>
public sealed class EnrollRequest<TRequest, TResponse> : EnrollRequest
    where TRequest : class, IEnrollRequest
    where TResponse : class, IEnrollResponse
{
    /// <summary>Declares a request type.</summary>
    public EnrollRequest(string topic, string name, JsonTypeInfo<TRequest> requestType, JsonTypeInfo<TResponse> responseType)
        : base(topic, name)
    {
        ArgumentNullException.ThrowIfNull(requestType);
        ArgumentNullException.ThrowIfNull(responseType);
        RequestType = requestType;
        ResponseType = responseType;
    }

    /// <summary>How the request is read and written.</summary>
    public JsonTypeInfo<TRequest> RequestType { get; }

    /// <summary>How the response is read and written.</summary>
    public JsonTypeInfo<TResponse> ResponseType { get; }

    /// <inheritdoc />
    public override bool NamesDevice => typeof(IDeviceRequest).IsAssignableFrom(typeof(TRequest));

    /// <summary>The identifiers that pick the response topic and match the answer: Device ID (when the request names one), client ID, request ID.</summary>
    public RequestIdentifiers Identifiers(TRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return new RequestIdentifiers((request as IDeviceRequest)?.DeviceId, request.ClientId, request.RequestId);
    }
}

/// <summary>The identifiers a request carries.</summary>
/// <param name="DeviceId">The Device ID it names, if any.</param>
/// <param name="ClientId">The sender's client ID (required by the server).</param>
/// <param name="RequestId">The request ID echoed in the answer.</param>
public readonly record struct RequestIdentifiers(string? DeviceId, string? ClientId, string? RequestId);
