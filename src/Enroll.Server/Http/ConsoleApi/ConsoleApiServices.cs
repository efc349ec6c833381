using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>The API the console needs beyond the operator API: live events, bulk decisions, the fleet overview (issue 15).</summary>
internal static class ConsoleApiServices
{
    public static IServiceCollection AddEnrollConsoleApi(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services;
    }

    public static WebApplication MapEnrollConsoleApi(this WebApplication app) => app;
}
