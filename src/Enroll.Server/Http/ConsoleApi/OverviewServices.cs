using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>The fleet overview: <c>GET /api/overview</c>, the refusal log and its sweeper (issue 15).</summary>
internal static class OverviewServices
{
    public static IServiceCollection AddEnrollOverview(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services;
    }

    public static RouteGroupBuilder MapEnrollOverview(this RouteGroupBuilder api) => api;
}
