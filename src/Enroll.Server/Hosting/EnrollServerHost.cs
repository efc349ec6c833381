using Enroll.Server.Broker;
using Enroll.Server.Data;
using Enroll.Server.Tokens;
using Enroll.Shared.Files;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server;

/// <summary>
/// A running Enroll server: embedded broker, request handlers, registry and HTTP API, all in one process. Create it with
/// <see cref="StartAsync(EnrollServerOptions, Action{EnrollServerBuilder}, CancellationToken)"/>; stop it with <see cref="StopAsync"/> or by disposing it.
/// </summary>
public sealed class EnrollServerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly FolderLock _folderLock;

    private EnrollServerHost(WebApplication app, FolderLock folderLock, Uri mqtt, Uri? mqttTls, Uri http, Uri? https, string dataDirectory, bool firstStart)
    {
        _app = app;
        _folderLock = folderLock;
        MqttEndpoint = mqtt;
        MqttTlsEndpoint = mqttTls;
        HttpEndpoint = http;
        HttpsEndpoint = https;
        DataDirectory = dataDirectory;
        FirstStart = firstStart;
        AdminKeyPath = Path.Combine(dataDirectory, AdminKey.FileName);
    }

    /// <summary>
    /// The broker address devices use, for example <c>mqtt://127.0.0.1:1883</c>; the TLS address
    /// (<c>mqtts://...</c>) when the server serves no plaintext.
    /// </summary>
    public Uri MqttEndpoint { get; }

    /// <summary>The broker's TLS address, for example <c>mqtts://127.0.0.1:8883</c>, when TLS is configured.</summary>
    public Uri? MqttTlsEndpoint { get; }

    /// <summary>The HTTP API address, for example <c>http://127.0.0.1:8080</c>; the HTTPS one when there is no plaintext.</summary>
    public Uri HttpEndpoint { get; }

    /// <summary>The HTTPS API address, for example <c>https://127.0.0.1:8443</c>, when TLS is configured.</summary>
    public Uri? HttpsEndpoint { get; }

    /// <summary>The data folder in use.</summary>
    public string DataDirectory { get; }

    /// <summary>The file holding the admin API key.</summary>
    public string AdminKeyPath { get; }

    /// <summary>True when this start created the data folder's keys.</summary>
    public bool FirstStart { get; }

    internal IServiceProvider Services => _app.Services;

    /// <summary>Completes when the host is asked to stop (Ctrl+C, SIGTERM or <see cref="StopAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>
    /// Starts a server with <paramref name="options"/>. The server owns its data folder until it is disposed: a second
    /// server on the same folder, a port another process listens on, or a setting out of its range (see
    /// <see cref="EnrollServerOptions"/>) fails with a <see cref="ServerStartException"/> whose message says which.
    /// <paramref name="configureServices"/> runs after the server's own registrations, so what it registers replaces them.
    /// </summary>
    public static Task<EnrollServerHost> StartAsync(
        EnrollServerOptions options,
        Action<ILoggingBuilder>? configureLogging = null,
        TimeProvider? timeProvider = null,
        Action<IServiceCollection>? configureServices = null,
        CancellationToken cancellationToken = default) =>
        StartAsync(
            options,
            server =>
            {
                if (configureLogging is not null)
                {
                    server.Logging.ClearProviders();
                    configureLogging(server.Logging);
                }

                if (timeProvider is not null)
                {
                    server.Services.AddSingleton(timeProvider);
                }

                configureServices?.Invoke(server.Services);
            },
            cancellationToken);

    /// <summary>
    /// Starts a server with <paramref name="options"/>, extended by <paramref name="configure"/>: it can add or replace
    /// services (<see cref="EnrollServerBuilder.Services"/>, after <c>AddEnrollServer</c>), and add middleware and
    /// endpoints to the HTTP API (docs/operations.md, "Extending the server"). Fails as the other overload does.
    /// </summary>
    public static async Task<EnrollServerHost> StartAsync(EnrollServerOptions options, Action<EnrollServerBuilder> configure, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(configure);

        // Before anything is opened or created: a setting out of range leaves no folder and no port behind.
        EnrollServerOptionsValidation.ThrowIfInvalid(options);
        var tls = ServerTls.Load(options);
        var dataDirectory = OwnerOnlyFiles.EnsureDirectory(options.DataDirectory);
        var folderLock = LockDataFolder(dataDirectory);
        try
        {
            return await StartLockedAsync(options, tls, dataDirectory, folderLock, configure, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            folderLock.Dispose();
            throw;
        }
    }

    private static FolderLock LockDataFolder(string dataDirectory)
    {
        try
        {
            return FolderLock.Acquire(dataDirectory, "server", "enroll server");
        }
        catch (FolderLockedException locked)
        {
            throw new ServerStartException(
                ServerStartProblem.DataFolderInUse,
                locked.Owner is { } owner
                    ? $"the data folder {dataDirectory} is in use by another server (process {owner.Pid}); stop it, or choose another folder with --data-dir"
                    : $"the data folder {dataDirectory} is in use by another server; stop it, or choose another folder with --data-dir",
                locked)
            {
                DataDirectory = dataDirectory,
                HolderProcessId = locked.Owner?.Pid,
            };
        }
    }

    private static async Task<EnrollServerHost> StartLockedAsync(
        EnrollServerOptions options,
        ServerTls tls,
        string dataDirectory,
        FolderLock folderLock,
        Action<EnrollServerBuilder> configure,
        CancellationToken cancellationToken)
    {
        // Configuration files are read once: watching them for changes would put a file watcher on the data folder,
        // woken by every write to the registry.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = "Enroll.Server",
            ContentRootPath = dataDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });

        // A listener that cannot start is reported by StartAsync as a one-line ServerStartException; the host's own
        // "Hosting failed to start" line would print the same failure again with a stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);

        var bind = BindAddress.Parse(options.Bind);
        builder.UseEnrollHttp(options, tls, bind);
        builder.Services.AddSingleton(tls);
        builder.Services.AddEnrollServer(options);
        var server = new EnrollServerBuilder(builder.Services, builder.Logging);
        configure(server);

        var app = builder.Build();
        bool firstStart;
        try
        {
            // The admin key and the key-encryption key are read before anything listens, so a misconfigured data folder or
            // a missing KEK fails fast; the server keys are loaded from the registry as the host starts (ServerKeysStartup).
            var adminKeyCreated = app.Services.GetRequiredService<AdminKey>().Created;
            app.Services.GetRequiredService<KeyEncryptionKey>();
            app.MapEnrollHttp(server);
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
            firstStart = adminKeyCreated | app.Services.GetRequiredService<PublishedKeys>().Created;
        }
        catch (Exception ex)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            if (PortInUse.Describe(ex, bind, options) is { } busy)
            {
                throw busy;
            }

            if (ex is OptionsValidationException invalid)
            {
                throw EnrollServerOptionsValidation.Invalid(invalid.Failures);
            }

            throw;
        }

        var broker = options.ExternalBroker is null ? app.Services.GetRequiredService<EmbeddedBroker>() : null;
        var mqttTls = broker?.TlsEndpoint;
        var mqtt = options.ExternalBroker ?? broker!.Endpoint ?? mqttTls!;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => new UriBuilder(a) { Host = BindAddress.ClientHost(bind).Trim('[', ']') }.Uri)
            .ToList();
        var https = addresses.FirstOrDefault(a => a.Scheme == Uri.UriSchemeHttps);
        var http = addresses.FirstOrDefault(a => a.Scheme == Uri.UriSchemeHttp) ?? https!;
        return new EnrollServerHost(app, folderLock, mqtt, mqttTls, http, https, dataDirectory, firstStart);
    }

    /// <summary>Stops the broker, the handlers and the HTTP API.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default) => await _app.StopAsync(cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        try
        {
            await _app.StopAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
        }

        await _app.DisposeAsync().ConfigureAwait(false);

        // Last, once the registry is closed: the next server may have the folder.
        _folderLock.Dispose();
    }
}
