using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Handlers;

/// <summary>Registers the request handlers and the routes the dispatcher serves.</summary>
internal static class RequestHandlerServices
{
    public static IServiceCollection AddRequestHandlers(this IServiceCollection services)
    {
        services.AddSingleton<RegistrationHandler>();
        services.AddSingleton<ProvisioningInitHandler>();
        services.AddSingleton<ProvisioningCompleteHandler>();
        services.AddSingleton<TokenRefreshHandler>();
        services.AddSingleton<RequestRoute>(sp => sp.GetRequiredService<RegistrationHandler>().Route);
        services.AddSingleton<RequestRoute>(sp => sp.GetRequiredService<ProvisioningInitHandler>().Route);
        services.AddSingleton<RequestRoute>(sp => sp.GetRequiredService<ProvisioningCompleteHandler>().Route);
        services.AddSingleton<RequestRoute>(sp => sp.GetRequiredService<TokenRefreshHandler>().Route);
        return services;
    }
}
