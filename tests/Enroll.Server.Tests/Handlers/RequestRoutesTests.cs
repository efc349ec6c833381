using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Server.Handlers;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Handlers;

/// <summary>The server serves exactly the request table: one handler per declaration, checked when the dispatcher starts.</summary>
public sealed class RequestRoutesTests(ITestOutputHelper output)
{
    [Fact]
    public async Task RunningServer_HasExactlyOneHandlerPerDeclaration_AndNoOther()
    {
        await using var server = await TestServer.StartAsync(output);
        var routes = server.Host.Services.GetServices<RequestRoute>().ToList();

        Assert.Equal(EnrollRequests.All.Count, routes.Count);
        Assert.All(EnrollRequests.All, request => Assert.Same(request, Assert.Single(routes, r => r.Topic == request.Topic).Request));
        Assert.Equal(EnrollRequests.All.Count, RequestHandlerServices.CheckedRoutes(routes).Count);
    }

    [Fact]
    public void CheckedRoutes_WithADeclarationLeftWithoutHandler_RefusesNamingIt()
    {
        var routes = AllRoutes().Where(r => r.Request != EnrollRequests.TokensRefresh).ToList();

        var refused = Assert.Throws<InvalidOperationException>(() => RequestHandlerServices.CheckedRoutes(routes));
        Assert.Contains("token_refresh", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckedRoutes_WithTwoHandlersForOneDeclaration_Refuses()
    {
        var routes = AllRoutes().Append(RouteFor(EnrollRequests.Register)).ToList();

        var refused = Assert.Throws<InvalidOperationException>(() => RequestHandlerServices.CheckedRoutes(routes));
        Assert.Contains("more than one handler", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckedRoutes_WithAHandlerForARequestOutsideTheTable_Refuses()
    {
        var stray = new EnrollRequest<RegistrationRequest, RegistrationResponse>(
            "enroll/v1/devices/twin/get", "twin_get", EnrollJsonContext.Default.RegistrationRequest, EnrollJsonContext.Default.RegistrationResponse);
        var routes = AllRoutes().Append(RouteFor(stray)).ToList();

        var refused = Assert.Throws<InvalidOperationException>(() => RequestHandlerServices.CheckedRoutes(routes));
        Assert.Contains("not in EnrollRequests.All", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>A route with a never-called handler for every declaration of the table, whatever its types.</summary>
    private static IEnumerable<RequestRoute> AllRoutes() => EnrollRequests.All.Select(RouteFor).ToList();

    private static RequestRoute RouteFor(EnrollRequest request)
    {
        var types = request.GetType().GetGenericArguments();
        var handler = Activator.CreateInstance(typeof(Answers<,>).MakeGenericType(types))!;
        return (RequestRoute)Activator.CreateInstance(typeof(RequestRoute<,>).MakeGenericType(types), request, handler)!;
    }

    /// <summary>A handler that is never called: these tests only bind routes.</summary>
    private sealed class Answers<TRequest, TResponse> : IRequestHandler<TRequest, TResponse>
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse
    {
        public Task<TResponse> HandleAsync(TRequest request, RequestContext context, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("not called by these tests");
    }
}
