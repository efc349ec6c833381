using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Enroll.Server;

/// <summary>
/// What a caller of <see cref="EnrollServerHost.StartAsync(EnrollServerOptions, Action{EnrollServerBuilder}, CancellationToken)"/>
/// may add to a server before it starts: services (registered after <c>AddEnrollServer</c>, so they replace its own),
/// logging, middleware and endpoints on the HTTP API. A web console is an endpoint group and its middleware.
/// </summary>
public sealed class EnrollServerBuilder
{
    private readonly List<Func<HttpContext, RequestDelegate, Task>> _middleware = [];
    private readonly List<Action<IEndpointRouteBuilder>> _endpoints = [];

    internal EnrollServerBuilder(IServiceCollection services, ILoggingBuilder logging)
    {
        Services = services;
        Logging = logging;
    }

    /// <summary>
    /// The server's services, with everything <c>AddEnrollServer</c> registered. Add <see cref="IMessageSink"/>
    /// forwarders here, or replace a service (the registry, the clock) with <c>Services.Replace(...)</c>.
    /// </summary>
    public IServiceCollection Services { get; }

    /// <summary>The server's logging; it writes single-line console output unless its providers are cleared.</summary>
    public ILoggingBuilder Logging { get; }

    /// <summary>
    /// Adds middleware to the HTTP pipeline. It runs after the admin-key gate (so <c>/api</c> is still refused without
    /// the key) and before the endpoints, in the order added.
    /// </summary>
    public EnrollServerBuilder UseMiddleware(Func<HttpContext, RequestDelegate, Task> middleware)
    {
        ArgumentNullException.ThrowIfNull(middleware);
        _middleware.Add(middleware);
        return this;
    }

    /// <summary>Maps endpoints on the HTTP API, next to the server's own (<c>/api/...</c>, <c>/healthz</c>, <c>/.well-known/jwks.json</c>).</summary>
    public EnrollServerBuilder MapEndpoints(Action<IEndpointRouteBuilder> map)
    {
        ArgumentNullException.ThrowIfNull(map);
        _endpoints.Add(map);
        return this;
    }

    internal IReadOnlyList<Func<HttpContext, RequestDelegate, Task>> Middleware => _middleware;

    internal IReadOnlyList<Action<IEndpointRouteBuilder>> Endpoints => _endpoints;
}
