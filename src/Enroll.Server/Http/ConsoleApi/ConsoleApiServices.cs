using Enroll.Server.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>The API the console needs beyond the operator API: live events, bulk decisions, the fleet overview (issue 15).</summary>
internal static class ConsoleApiServices
{
    public static IServiceCollection AddEnrollConsoleApi(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.AddSingleton<ConsoleFeed>();
        services.AddSingleton<EventsApi>();
        services.AddEnrollOverview(options);
        services.AddEnrollDeviceStatus(options);
        return services;
    }

    public static WebApplication MapEnrollConsoleApi(this WebApplication app)
    {
        var api = app.MapGroup("/api");
        api.MapGet("/events", (HttpContext http, EventsApi events) => events.StreamAsync(http));
        api.MapPost("/provisioning-operations/bulk", BulkDecisionApi.DecideAsync);
        api.MapEnrollOverview();
        api.MapEnrollDeviceStatus();
        return app;
    }
}
