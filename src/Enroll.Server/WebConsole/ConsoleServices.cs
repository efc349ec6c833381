using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.WebConsole;

/// <summary>The web console: its pages and assets, served from inside the server (issue 15).</summary>
internal static class ConsoleServices
{
    public static IServiceCollection AddEnrollConsole(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services;
    }

    public static WebApplication MapEnrollConsole(this WebApplication app) => app;
}
