using Enroll.Shared.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Registry;

/// <summary>Registers the registry the server stores everything in.</summary>
internal static class RegistryServices
{
    /// <summary>
    /// Registers the registry as the <see cref="IRegistry"/> — PostgreSQL (<see cref="PostgresRegistry"/>) when
    /// <see cref="EnrollServerOptions.Database"/> is set, else SQLite in <paramref name="dataDirectory"/> — and each aggregate
    /// interface as that one instance. A replacement store registers its own <see cref="IRegistry"/> (before or after this
    /// call: the last registration wins, and the aggregates follow it); the container disposes the store.
    /// </summary>
    public static IServiceCollection AddEnrollRegistry(this IServiceCollection services, EnrollServerOptions options, string dataDirectory)
    {
        if (options.Database is { } database)
        {
            services.TryAddSingleton<IRegistry>(_ => PostgresRegistry.FromOptions(database));
            services.TryAddSingleton(sp => new PostgresRegistryChanges(
                database,
                Environment.GetEnvironmentVariable(PostgresRegistry.PasswordVariable),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILogger<PostgresRegistryChanges>>()));
            services.TryAddSingleton<IRegistryChanges>(sp => sp.GetRequiredService<PostgresRegistryChanges>());
            services.AddHostedService(sp => sp.GetRequiredService<PostgresRegistryChanges>());
        }
        else
        {
            services.TryAddSingleton<IRegistry>(_ => new SqliteRegistry(
                Path.Combine(dataDirectory, SqliteRegistry.FileName),
                options.DurableCommits ? SqliteDurability.Full : SqliteDurability.Relaxed));
            services.TryAddSingleton<IRegistryChanges, InProcessRegistryChanges>();
        }
        services.AddSingleton<IProvisioningTokenStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IDeviceStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IOperationStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IMessageStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IKeyStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<ICredentialFailureStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<ITwinStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<ICommandStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<ICommandRolloutStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IFileStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IOperatorStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IAuditStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IRefusalStore>(sp => sp.GetRequiredService<IRegistry>());
        services.AddSingleton<IDeviceStatusStore>(sp => sp.GetRequiredService<IRegistry>());
        return services;
    }
}
