using System.Text.Json.Serialization.Metadata;
using Enroll.Protocol.Messages;

namespace Enroll.Server.Handlers;

/// <summary>How one request topic is decoded, handled and answered.</summary>
internal abstract class RequestRoute
{
    public abstract string Topic { get; }

    /// <summary>A short name for logs and metrics.</summary>
    public abstract string Name { get; }

    /// <summary>Hands the request to the dispatcher with this route's types (double dispatch, no reflection).</summary>
    internal abstract Task<string> AcceptAsync(RequestDispatcher dispatcher, IncomingRequest request, CancellationToken cancellationToken);
}

/// <summary>A typed route: request and response types, the identifiers that pick the response topic, and the handler.</summary>
internal sealed class RequestRoute<TRequest, TResponse> : RequestRoute
    where TRequest : class
    where TResponse : class, IEnrollResponse
{
    public RequestRoute(
        string topic,
        string name,
        JsonTypeInfo<TRequest> requestType,
        JsonTypeInfo<TResponse> responseType,
        Func<TRequest, (string? DeviceId, string? ClientId, string? RequestId)> identifiers,
        Func<TRequest, RequestContext, CancellationToken, Task<TResponse>> handle,
        Func<ErrorBody, string?, TResponse> error)
    {
        Topic = topic;
        Name = name;
        RequestType = requestType;
        ResponseType = responseType;
        Identifiers = identifiers;
        Handle = handle;
        Error = error;
    }

    public override string Topic { get; }

    public override string Name { get; }

    public JsonTypeInfo<TRequest> RequestType { get; }

    public JsonTypeInfo<TResponse> ResponseType { get; }

    public Func<TRequest, (string? DeviceId, string? ClientId, string? RequestId)> Identifiers { get; }

    public Func<TRequest, RequestContext, CancellationToken, Task<TResponse>> Handle { get; }

    public Func<ErrorBody, string?, TResponse> Error { get; }

    internal override Task<string> AcceptAsync(RequestDispatcher dispatcher, IncomingRequest request, CancellationToken cancellationToken) =>
        dispatcher.DispatchAsync(this, request, cancellationToken);
}
