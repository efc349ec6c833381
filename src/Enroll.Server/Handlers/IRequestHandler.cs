using Enroll.Protocol.Messages;

namespace Enroll.Server.Handlers;

/// <summary>
/// Serves one request type of <see cref="Protocol.Requests.EnrollRequests"/>, bound to its declaration in
/// <see cref="RequestHandlerServices"/>. Refusals are thrown as <see cref="Domain.RejectedException"/>; the dispatcher
/// turns them into the <c>error</c> answer.
/// </summary>
internal interface IRequestHandler<in TRequest, TResponse>
    where TRequest : class, IEnrollRequest
    where TResponse : class, IEnrollResponse
{
    Task<TResponse> HandleAsync(TRequest request, RequestContext context, CancellationToken cancellationToken);
}
