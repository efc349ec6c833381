using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;

namespace Enroll.Server.Handlers;

/// <summary>A request declaration bound to its handler: what the dispatcher serves on one topic.</summary>
internal abstract class RequestRoute
{
    public abstract EnrollRequest Request { get; }

    public string Topic => Request.Topic;

    /// <summary>A short name for logs and metrics.</summary>
    public string Name => Request.Name;

    /// <summary>Hands the request to the dispatcher with this route's types (double dispatch, no reflection).</summary>
    internal abstract Task<string> AcceptAsync(RequestDispatcher dispatcher, IncomingRequest request, CancellationToken cancellationToken);
}

/// <summary>A typed route: the declaration's message types and the handler that serves them.</summary>
internal sealed class RequestRoute<TRequest, TResponse>(EnrollRequest<TRequest, TResponse> request, IRequestHandler<TRequest, TResponse> handler) : RequestRoute
    where TRequest : class, IEnrollRequest
    where TResponse : class, IEnrollResponse
{
    public override EnrollRequest<TRequest, TResponse> Request { get; } = request;

    public IRequestHandler<TRequest, TResponse> Handler { get; } = handler;

    internal override Task<string> AcceptAsync(RequestDispatcher dispatcher, IncomingRequest request, CancellationToken cancellationToken) =>
        dispatcher.DispatchAsync(this, request, cancellationToken);
}
