using Enroll.Server.Twins;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the server's twin services: desired patches with their push, and the history sweep.</summary>
internal static class TwinServices
{
    public static IServiceCollection AddEnrollTwins(this IServiceCollection services)
    {
        services.TryAddSingleton<TwinService>();
        services.AddHostedService<TwinHistorySweeper>();
        return services;
    }
}
