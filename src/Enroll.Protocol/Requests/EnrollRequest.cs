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
    private protected EnrollRequest(string topic, string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ArgumentException.ThrowIfNullOrEmpty(name);
        Topic = topic;
        Name = name;
    }

    /// <summary>The topic the request is published to, under <c>enroll/v1/</c>.</summary>
    public string Topic { get; }

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
