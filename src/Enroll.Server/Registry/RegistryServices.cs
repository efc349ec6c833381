using Enroll.Shared.Storage;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Registry;

/// <summary>Registers the registry the server stores everything in.</summary>
internal static class RegistryServices
{
    public static IServiceCollection AddEnrollRegistry(this IServiceCollection services, EnrollServerOptions options, string dataDirectory)
    {
        services.AddSingleton<IRegistry>(_ => new SqliteRegistry(
            Path.Combine(dataDirectory, SqliteRegistry.FileName),
            options.DurableCommits ? SqliteDurability.Full : SqliteDurability.Relaxed));
        return services;
    }
}
