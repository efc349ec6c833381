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
        var routes = AllRoutes().Where(r => r.Request != EnrollRequests.TokensRefresh);

        var refused = Assert.Throws<InvalidOperationException>(() => RequestHandlerServices.CheckedRoutes(routes));
        Assert.Contains("token_refresh", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckedRoutes_WithTwoHandlersForOneDeclaration_Refuses()
    {
        var routes = AllRoutes().Append(new RequestRoute<RegistrationRequest, RegistrationResponse>(EnrollRequests.Register, new Answers<RegistrationRequest, RegistrationResponse>()));

        var refused = Assert.Throws<InvalidOperationException>(() => RequestHandlerServices.CheckedRoutes(routes));
        Assert.Contains("more than one handler", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckedRoutes_WithAHandlerForARequestOutsideTheTable_Refuses()
    {
        var stray = new EnrollRequest<RegistrationRequest, RegistrationResponse>(
            "enroll/v1/devices/twin/get", "twin_get", EnrollJsonContext.Default.RegistrationRequest, EnrollJsonContext.Default.RegistrationResponse);
        var routes = AllRoutes().Append(new RequestRoute<RegistrationRequest, RegistrationResponse>(stray, new Answers<RegistrationRequest, RegistrationResponse>()));

        var refused = Assert.Throws<InvalidOperationException>(() => RequestHandlerServices.CheckedRoutes(routes));
        Assert.Contains("not in EnrollRequests.All", refused.Message, StringComparison.Ordinal);
    }

    private static IEnumerable<RequestRoute> AllRoutes() =>
    [
        new RequestRoute<RegistrationRequest, RegistrationResponse>(EnrollRequests.Register, new Answers<RegistrationRequest, RegistrationResponse>()),
        new RequestRoute<ProvisioningInitRequest, ProvisioningInitResponse>(EnrollRequests.ProvisioningInit, new Answers<ProvisioningInitRequest, ProvisioningInitResponse>()),
        new RequestRoute<ProvisioningCompleteRequest, ProvisioningCompleteResponse>(EnrollRequests.ProvisioningComplete, new Answers<ProvisioningCompleteRequest, ProvisioningCompleteResponse>()),
        new RequestRoute<TokenRefreshRequest, TokenRefreshResponse>(EnrollRequests.TokensRefresh, new Answers<TokenRefreshRequest, TokenRefreshResponse>()),
    ];

    /// <summary>A handler that is never called: these tests only bind routes.</summary>
    private sealed class Answers<TRequest, TResponse> : IRequestHandler<TRequest, TResponse>
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse
    {
        public Task<TResponse> HandleAsync(TRequest request, RequestContext context, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("not called by these tests");
    }
}
