using System.Diagnostics.Metrics;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using Enroll.Device.Requests;
using Enroll.Device.Tokens;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the Enroll device library in a Generic Host.</summary>
public static class EnrollDeviceServiceCollectionExtensions
{
    /// <summary>
    /// Adds the Enroll device services configured by <paramref name="configure"/>, including the
    /// <see cref="Enroll.Device.EnrollDeviceAgent"/> hosted service that registers the device and keeps it registered, and the
    /// <see cref="Enroll.Device.OutboxPublisher"/> that delivers what <see cref="Enroll.Device.DeviceOutbox"/> stores.
    /// The <see cref="Enroll.Device.DeviceTwin"/> and <see cref="Enroll.Device.DeviceCommands"/> are kept in step with the
    /// server by a hosted service on the device's connection, and another reports the outbox to the server
    /// (<see cref="Enroll.Device.EnrollDeviceOptions.StatusReportInterval"/>). Options are validated at start.
    /// Replace <see cref="Enroll.Device.ICredentialStore"/> or <see cref="Enroll.Device.IDeviceInfoProvider"/> by registering
    /// your own before or after this call.
    /// </summary>
    public static IServiceCollection AddEnrollDevice(this IServiceCollection services, Action<Enroll.Device.EnrollDeviceOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptionsWithValidateOnStart<Enroll.Device.EnrollDeviceOptions>().Configure(configure);
        return services.AddEnrollDeviceCore();
    }

    /// <summary>Adds the Enroll device services bound to <paramref name="configuration"/> (for example the <c>Enroll:Device</c> section).</summary>
    public static IServiceCollection AddEnrollDevice(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptionsWithValidateOnStart<Enroll.Device.EnrollDeviceOptions>().Bind(configuration);
        return services.AddEnrollDeviceCore();
    }

    private static IServiceCollection AddEnrollDeviceCore(this IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<Enroll.Device.EnrollDeviceOptions>, Enroll.Device.EnrollDeviceOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<Enroll.Device.EnrollDeviceOptions>, Enroll.Device.EnrollDeviceOptionsRules>());
        services.TryAddSingleton(TimeProvider.System);
#pragma warning disable RS0030 // the one place the process's random source is chosen; everything else takes the injected Jitter
        services.TryAddSingleton(sp => sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>().Value.UseJitter ? new Enroll.Device.Jitter(Random.Shared.NextDouble) : Enroll.Device.Jitter.None);
#pragma warning restore RS0030
        services.TryAddSingleton(sp => new Enroll.Device.DeviceHealth(sp.GetRequiredService<TimeProvider>()));
        services.AddHostedService<Enroll.Device.DeviceHealthReporter>();
        services.TryAddSingleton<Enroll.Device.ICredentialStore>(sp => new Enroll.Device.SqliteCredentialStore(
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>().Value.StatePath,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<Enroll.Device.SqliteCredentialStore>()));
        services.TryAddSingleton<Enroll.Device.IDeviceInfoProvider, Enroll.Device.HostDeviceInfoProvider>();
        services.TryAddSingleton<IDeviceConnection, MqttDeviceConnection>();
        services.TryAddSingleton(sp => sp.GetService<IMeterFactory>() is { } meters ? new DeviceMetrics(meters) : new DeviceMetrics(new NullMeterFactory()));
        services.TryAddSingleton(sp => new RequestChannel(sp.GetRequiredService<IDeviceConnection>()));
        services.TryAddSingleton<ServerRequestSender>(sp => new ServerRequestSender(
            sp.GetRequiredService<RequestChannel>(),
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<ServerRequestSender>>(),
            sp.GetRequiredService<DeviceMetrics>(),
            sp.GetRequiredService<ServerTokenVerifier>(),
            sp.GetRequiredService<Enroll.Device.Jitter>()));
        services.TryAddSingleton(sp => new ServerTokenVerifier(
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<ServerTokenVerifier>>()));
        services.TryAddSingleton(sp => new Enroll.Device.RegistrationService(
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<Enroll.Device.ICredentialStore>(),
            sp.GetRequiredService<Enroll.Device.IDeviceInfoProvider>(),
            sp.GetRequiredService<RequestChannel>(),
            sp.GetRequiredService<ServerRequestSender>(),
            sp.GetRequiredService<ServerTokenVerifier>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<Enroll.Device.RegistrationService>>(),
            sp.GetRequiredService<DeviceMetrics>(),
            sp.GetRequiredService<Enroll.Device.DeviceHealth>(),
            sp.GetRequiredService<Enroll.Device.Jitter>(),
            () => OwnStateFolder(sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>().Value.StatePath)));
        services.AddHostedService(sp => new Enroll.Device.EnrollDeviceAgent(
            sp.GetRequiredService<Enroll.Device.RegistrationService>(),
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<Enroll.Device.EnrollDeviceAgent>>(),
            sp.GetRequiredService<Enroll.Device.DeviceHealth>(),
            sp.GetRequiredService<Enroll.Device.Jitter>(),
            sp.GetService<Microsoft.Extensions.Hosting.IHostApplicationLifetime>()));
        services.TryAddSingleton(sp => sp.GetService<IMeterFactory>() is { } meters ? new OutboxMetrics(meters) : new OutboxMetrics(new NullMeterFactory()));
        services.TryAddSingleton(sp =>
        {
            var registration = sp.GetRequiredService<Enroll.Device.RegistrationService>();
            var store = sp.GetRequiredService<Enroll.Device.ICredentialStore>();
            var stored = new Lazy<string?>(() => store.LoadAsync().AsTask().GetAwaiter().GetResult()?.DeviceId);
            return new Enroll.Device.DeviceOutbox(
                sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILogger<Enroll.Device.DeviceOutbox>>(),
                () => registration.CurrentCredentials?.DeviceId ?? stored.Value,
                sp.GetRequiredService<OutboxMetrics>());
        });
        services.TryAddSingleton(sp => new DeviceSession(
            sp.GetRequiredService<Enroll.Device.RegistrationService>(),
            sp.GetRequiredService<IDeviceConnection>(),
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<DeviceSession>>(),
            sp.GetRequiredService<Enroll.Device.Jitter>()));
        services.TryAddSingleton(sp => new Enroll.Device.OutboxPublisher(
            sp.GetRequiredService<Enroll.Device.DeviceOutbox>(),
            sp.GetRequiredService<DeviceSession>(),
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<Enroll.Device.OutboxPublisher>>(),
            sp.GetRequiredService<Enroll.Device.DeviceHealth>(),
            sp.GetRequiredService<Enroll.Device.Jitter>(),
            sp.GetRequiredService<OutboxMetrics>(),
            sp.GetRequiredService<ServerRequestSender>()));
        services.AddHostedService(sp => sp.GetRequiredService<Enroll.Device.OutboxPublisher>());
        services.TryAddSingleton(sp => new Enroll.Device.State.ManagementStoreHandle(() => new Enroll.Device.State.ManagementStore(
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>().Value.StatePath,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<Enroll.Device.State.ManagementStore>>())));
        services.TryAddSingleton(sp => new Enroll.Device.DeviceTwin(
            sp.GetRequiredService<Enroll.Device.State.ManagementStoreHandle>(),
            sp.GetRequiredService<ILogger<Enroll.Device.DeviceTwin>>()));
        services.TryAddSingleton(_ => new Enroll.Device.DeviceCommands());
        services.AddHostedService(sp => new Enroll.Device.DeviceManagementAgent(
            sp.GetRequiredService<DeviceSession>(),
            sp.GetRequiredService<IDeviceConnection>(),
            sp.GetRequiredService<RequestChannel>(),
            sp.GetRequiredService<ServerRequestSender>(),
            sp.GetRequiredService<Enroll.Device.DeviceTwin>(),
            sp.GetRequiredService<Enroll.Device.DeviceCommands>(),
            sp.GetRequiredService<Enroll.Device.State.ManagementStoreHandle>(),
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<Enroll.Device.DeviceManagementAgent>>(),
            sp.GetRequiredService<Enroll.Device.DeviceHealth>(),
            sp.GetRequiredService<Enroll.Device.Jitter>()));
        services.AddHostedService(sp => new Enroll.Device.DeviceStatusReporter(
            sp.GetRequiredService<IDeviceConnection>(),
            sp.GetRequiredService<RequestChannel>(),
            sp.GetRequiredService<ServerRequestSender>(),
            sp.GetRequiredService<Enroll.Device.DeviceOutbox>(),
            sp.GetRequiredService<IOptions<Enroll.Device.EnrollDeviceOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<Enroll.Device.DeviceStatusReporter>>()));
        return services;
    }

    /// <summary>Makes this process the owner of the state folder (lock <c>agent.lock</c>), or says which process is.</summary>
    private static Enroll.Shared.Files.FolderLock OwnStateFolder(string statePath)
    {
        try
        {
            return Enroll.Shared.Files.FolderLock.Acquire(statePath, "agent", "enroll device agent");
        }
        catch (Enroll.Shared.Files.FolderLockedException ex)
        {
            throw new Enroll.Device.StateFolderInUseException(ex.Folder, ex.Owner?.Pid, ex);
        }
    }
}
