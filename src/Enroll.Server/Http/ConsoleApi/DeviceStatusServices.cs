using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>Device status reports (<c>enroll/v1/devices/{id}/status</c>) and <c>GET /api/devices/{id}/history</c> (issue 15).</summary>
internal static class DeviceStatusServices
{
    public static IServiceCollection AddEnrollDeviceStatus(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services;
    }

    public static RouteGroupBuilder MapEnrollDeviceStatus(this RouteGroupBuilder api) => api;
}
