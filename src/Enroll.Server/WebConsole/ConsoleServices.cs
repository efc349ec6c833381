using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Enroll.Server.WebConsole;

/// <summary>The web console: its pages and assets, served from inside the server (issue 15).</summary>
internal static class ConsoleServices
{
    public static IServiceCollection AddEnrollConsole(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(ConsoleAssets.Load());
        return services;
    }

    /// <summary>
    /// Serves the console's assets to GET and HEAD requests that no endpoint took: routes of the API, health and broker
    /// hooks always win, and a path that is neither an endpoint nor an asset stays a 404.
    /// </summary>
    public static WebApplication MapEnrollConsole(this WebApplication app)
    {
        var assets = app.Services.GetRequiredService<ConsoleAssets>();
        app.Use((context, next) => assets.TryServeAsync(context, next));
        return app;
    }
}
