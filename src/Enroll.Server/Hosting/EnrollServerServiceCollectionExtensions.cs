using Enroll.Protocol;
using Enroll.Server;
using Enroll.Server.Broker;
using Enroll.Server.Data;
using Enroll.Server.Diagnostics;
using Enroll.Server.Handlers;
using Enroll.Server.Http;
using Enroll.Server.Http.ConsoleApi;
using Enroll.Server.Http.Operators;
using Enroll.Server.Observability;
using Enroll.Server.Provisioning;
using Enroll.Server.ProvisioningTokens;
using Enroll.Server.Registry;
using Enroll.Server.Security;
using Enroll.Server.Tokens;
using Enroll.Server.WebConsole;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>The Enroll server's composition root.</summary>
public static class EnrollServerServiceCollectionExtensions
{
    /// <summary>
    /// Adds everything an Enroll server runs: its <paramref name="options"/> (validated on start), the clock, keys, the
    /// registry, metrics, the request handlers and their dispatcher, the broker transport (embedded, or the
    /// <see cref="EnrollServerOptions.ExternalBroker"/>) and the operation sweeper. The data folder
    /// (<see cref="EnrollServerOptions.DataDirectory"/>) must exist; <see cref="EnrollServerHost"/> creates and locks it.
    /// Services registered after this call replace these: the clock (<see cref="TimeProvider"/>), or the registry, with
    /// <c>services.Replace(ServiceDescriptor.Singleton&lt;IRegistry&gt;(...))</c> (docs/operations.md, "Extending the server").
    /// </summary>
    public static IServiceCollection AddEnrollServer(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        var dataDirectory = Path.GetFullPath(options.DataDirectory);

        // The options are the instance the caller gave; validation runs on it when it is first read and on start.
        services.AddOptionsWithValidateOnStart<EnrollServerOptions>();
        services.AddSingleton<IOptionsFactory<EnrollServerOptions>>(sp => new GivenOptionsFactory(
            options,
            sp.GetServices<IConfigureOptions<EnrollServerOptions>>(),
            sp.GetServices<IPostConfigureOptions<EnrollServerOptions>>(),
            sp.GetServices<IValidateOptions<EnrollServerOptions>>()));
        foreach (var validator in EnrollServerOptionsValidation.Validators)
        {
            services.TryAddEnumerable(ServiceDescriptor.Singleton(validator));
        }

        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp => ServerTls.Load(sp.GetRequiredService<IOptions<EnrollServerOptions>>().Value));
        services.TryAddSingleton(sp => new TimeOrderedId(sp.GetRequiredService<TimeProvider>()));

        // The admin key and the key-encryption key are read (or made) before anything listens; the signing and encryption
        // keys live in the registry, sealed under the KEK, and are loaded by ServerKeysStartup before the broker starts.
        services.TryAddSingleton(_ => KeyEncryptionKey.Load(options, dataDirectory, Environment.GetEnvironmentVariable(KeyEncryptionKey.Variable)));
        services.TryAddSingleton<SigningKeyRing>();
        services.TryAddSingleton<EncryptionKeyRing>();
        services.TryAddSingleton(_ => AdminKey.LoadOrCreate(dataDirectory));
        services.TryAddSingleton<PublishedKeys>();

        services.AddEnrollRegistry(options, dataDirectory);
        services.TryAddSingleton<Enroll.Server.Files.IBlobStore>(_ => new Enroll.Server.Files.FolderBlobStore(options.FilesDirectory ?? Path.Combine(dataDirectory, "files")));
        services.AddHostedService<ServerKeysStartup>();
        services.TryAddSingleton<ServerMetrics>();
        services.TryAddSingleton<RegistryDiskFull>();
        services.TryAddSingleton<AdminGate>();
        services.AddEnrollObservability(options);
        services.AddEnrollOperators(options);
        services.AddEnrollConsoleApi(options);
        services.AddEnrollConsole(options);
        services.TryAddSingleton<ProvisioningTokenService>();
        services.TryAddSingleton<TokenIssuer>();
        services.TryAddSingleton<DeviceTokenValidator>();
        services.TryAddSingleton<RequestQueue>();
        services.TryAddSingleton<AdmissionControl>();
        services.TryAddSingleton<RegistrationTokenService>();
        services.TryAddSingleton<FailureRateLimiter>();
        services.TryAddKeyedSingleton(FailureRateLimiter.AdminKeys, (sp, _) => FailureRateLimiter.ForAdminKeys(sp));
        services.TryAddSingleton<OperationService>();
        services.AddRequestHandlers();
        services.AddHostedService<OperationExpirySweeper>();
        services.AddHostedService<CredentialFailureSweeper>();
        services.AddEnrollTwins();
        services.TryAddSingleton(sp => new Enroll.Server.Commands.CommandDelivery(
            sp.GetRequiredService<IResponsePublisher>(),
            sp.GetService<EmbeddedBroker>() is { } embedded ? device => embedded.HasSessionAsync(device.DeviceId, device.ClientId) : null));
        services.TryAddSingleton<Enroll.Server.Commands.CommandWaiters>();
        services.TryAddSingleton<Enroll.Server.Commands.CommandService>();
        services.AddHostedService<Enroll.Server.Commands.CommandExpirySweeper>();
        services.AddHostedService<Enroll.Server.Commands.RolloutAdvancer>();
        services.TryAddSingleton<Enroll.Server.Ingest.MessageIngest>();
        services.TryAddSingleton<Enroll.Server.Files.TransferIngest>();
        services.AddHostedService<Enroll.Server.Files.TransferExpirySweeper>();
        services.AddBrokerTransport(options);
        services.AddHostedService<RequestDispatcher>();
        return services;
    }

    /// <summary>The transport requests arrive by: the embedded broker, or the external one the options name.</summary>
    private static void AddBrokerTransport(this IServiceCollection services, EnrollServerOptions options)
    {
        services.TryAddSingleton<RequestIntake>();
        if (options.ExternalBroker is null)
        {
            services.AddSingleton<EmbeddedBroker>();
            services.AddSingleton<IResponsePublisher>(sp => sp.GetRequiredService<EmbeddedBroker>());
            services.AddSingleton<IDeviceSessions>(sp => sp.GetRequiredService<EmbeddedBroker>());
            services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBroker>());
        }
        else
        {
            services.AddSingleton<ExternalBrokerTransport>();
            services.AddSingleton<IResponsePublisher>(sp => sp.GetRequiredService<ExternalBrokerTransport>());
            services.AddSingleton<IDeviceSessions>(sp => sp.GetRequiredService<ExternalBrokerTransport>());
            services.AddHostedService(sp => sp.GetRequiredService<ExternalBrokerTransport>());
            services.AddSingleton<Enroll.Server.Broker.External.ExternalIngest>();
            services.AddHostedService(sp => sp.GetRequiredService<Enroll.Server.Broker.External.ExternalIngest>());
        }

        if (options.ExternalBroker is not null && options.BrokerAdmin == BrokerAdmin.MosquittoDynamicSecurity)
        {
            // Devices authenticate to Mosquitto with their tokens, and a revocation disables them there.
            services.AddSingleton<Enroll.Server.Broker.Mosquitto.MosquittoDynamicSecurity>();
            services.AddSingleton<IBrokerCredentials>(sp => sp.GetRequiredService<Enroll.Server.Broker.Mosquitto.MosquittoDynamicSecurity>());
            services.Replace(ServiceDescriptor.Singleton<IDeviceSessions>(sp => sp.GetRequiredService<Enroll.Server.Broker.Mosquitto.MosquittoDynamicSecurity>()));
            services.AddHostedService(sp => sp.GetRequiredService<Enroll.Server.Broker.Mosquitto.MosquittoDynamicSecurity>());
        }

        if (options.ExternalBroker is not null && options.BrokerAdmin == BrokerAdmin.EmqxApi)
        {
            // Devices authenticate through the webhooks; a revocation kicks the device's session through EMQX's API.
            services.AddSingleton<Enroll.Server.Broker.Emqx.EmqxSessions>();
            services.Replace(ServiceDescriptor.Singleton<IDeviceSessions>(sp => sp.GetRequiredService<Enroll.Server.Broker.Emqx.EmqxSessions>()));
        }

        services.TryAddSingleton<IBrokerCredentials, NoBrokerCredentials>();
    }

    /// <summary>Options that are the given instance (checked by the registered validators) rather than a new one.</summary>
    private sealed class GivenOptionsFactory(
        EnrollServerOptions given,
        IEnumerable<IConfigureOptions<EnrollServerOptions>> setups,
        IEnumerable<IPostConfigureOptions<EnrollServerOptions>> postConfigures,
        IEnumerable<IValidateOptions<EnrollServerOptions>> validations)
        : OptionsFactory<EnrollServerOptions>(setups, postConfigures, validations)
    {
        protected override EnrollServerOptions CreateInstance(string name) => given;
    }
}
