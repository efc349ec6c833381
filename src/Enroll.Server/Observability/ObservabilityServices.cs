using System.Text.Json.Nodes;
using Enroll.Server.Broker;
using Enroll.Server.Broker.External;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Enroll.Server.Observability;

/// <summary>Metrics exporters (Prometheus <c>/metrics</c>, OTLP), <c>/livez</c>, <c>/readyz</c> and <c>/healthz</c>, systemd notify (issue 15).</summary>
internal static class ObservabilityServices
{
    public static IServiceCollection AddEnrollObservability(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.AddSystemd();
        if (!SystemdHelpers.IsSystemdService())
        {
            // Not started by systemd itself (a test, a supervisor speaking the same protocol): notify when NOTIFY_SOCKET is set.
            services.AddHostedService<SystemdNotify>();
        }

        services.AddSingleton<ReadinessProbe>();
        var otlp = options.OtlpEndpoint ?? (Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") is { Length: > 0 } fromEnv ? new Uri(fromEnv) : null);
        if (!options.MetricsEndpoint && otlp is null)
        {
            return services;
        }

        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("enroll-server"))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(ServerInstruments.MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel");
                if (options.MetricsEndpoint)
                {
                    metrics.AddPrometheusExporter(prometheus => prometheus.ScrapeResponseCacheDurationMilliseconds = 0);
                }

                if (otlp is not null)
                {
                    // The other OTEL_EXPORTER_OTLP_* variables (protocol, headers, timeout) are read by the exporter itself.
                    metrics.AddOtlpExporter(exporter => exporter.Endpoint = otlp);
                }
            });
        return services;
    }

    public static WebApplication MapEnrollObservability(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapGet("/livez", () => TypedResults.Text("ok\n"));
        app.MapGet("/healthz", () => TypedResults.Text("ok\n"));
        app.MapGet("/readyz", async (ReadinessProbe probe, CancellationToken cancellationToken) =>
        {
            var (ready, body) = await probe.CheckAsync(cancellationToken).ConfigureAwait(false);
            return Results.Text(body.ToJsonString() + "\n", "application/json", statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });

        var options = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EnrollServerOptions>>().Value;
        if (options.MetricsEndpoint)
        {
            var key = options.MetricsKey;
            app.MapPrometheusScrapingEndpoint("/metrics", meterProvider: null, configureBranchedPipeline: key is null ? null : branch => branch.Use(async (context, next) =>
            {
                if (!MetricsKeyMatches(context.Request.Headers.Authorization.ToString(), key))
                {
                    context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                    return;
                }

                await next(context).ConfigureAwait(false);
            }), optionsName: null);
        }

        return app;
    }

    private static bool MetricsKeyMatches(string authorization, string key)
    {
        const string prefix = "Bearer ";
        if (!authorization.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var given = System.Text.Encoding.UTF8.GetBytes(authorization[prefix.Length..].Trim());
        return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, System.Text.Encoding.UTF8.GetBytes(key));
    }
}

/// <summary>
/// What <c>/readyz</c> checks: the registry answers a lookup, the broker is up (the embedded one started, or the
/// external one connected), and the server keys are loaded.
/// </summary>
internal sealed class ReadinessProbe(IServiceProvider services, IDeviceStore devices, SigningKeyRing signing, EncryptionKeyRing encryption)
{
    /// <summary>How long the registry may take to answer before it counts as unreachable.</summary>
    public static readonly TimeSpan RegistryTimeout = TimeSpan.FromSeconds(3);

    public async Task<(bool Ready, JsonObject Body)> CheckAsync(CancellationToken cancellationToken)
    {
        var checks = new JsonObject
        {
            ["registry"] = await RegistryAsync(cancellationToken).ConfigureAwait(false),
            ["broker"] = Broker(),
            ["keys"] = Keys(),
        };
        var notReady = checks.Where(c => c.Value!["ready"]!.GetValue<bool>() is false).Select(c => (JsonNode)c.Key).ToArray();
        return (notReady.Length == 0, new JsonObject
        {
            ["status"] = notReady.Length == 0 ? "ready" : "not_ready",
            ["not_ready"] = new JsonArray(notReady),
            ["checks"] = checks,
        });
    }

    private async Task<JsonObject> RegistryAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(RegistryTimeout);
        try
        {
            await devices.FindDeviceAsync("readyz-probe", timeout.Token).WaitAsync(timeout.Token).ConfigureAwait(false);
            return Check(null);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return Check($"no answer within {RegistryTimeout.TotalSeconds:0} s");
        }
#pragma warning disable CA1031 // any failure means "not ready", with its message
        catch (Exception ex) when (ex is not OperationCanceledException)
#pragma warning restore CA1031
        {
            return Check(ex.Message);
        }
    }

    private JsonObject Broker()
    {
        if (services.GetService<EmbeddedBroker>() is { } embedded)
        {
            return Check(embedded.IsStarted ? null : "the embedded broker is not started");
        }

        var external = new ExternalBrokerConnection?[] { services.GetService<ExternalBrokerTransport>(), services.GetService<ExternalIngest>() };
        var down = external.OfType<ExternalBrokerConnection>().Where(c => !c.IsConnected).Select(c => c.ClientId).ToList();
        return Check(down.Count == 0 ? null : $"not connected to the external broker ({string.Join(", ", down)})");
    }

    private JsonObject Keys()
    {
        try
        {
            return Check(signing.KeySet.Keys.Count > 0 && encryption.PublicKeys().Any() ? null : "the server keys are not loaded");
        }
        catch (InvalidOperationException ex)
        {
            return Check(ex.Message);
        }
    }

    private static JsonObject Check(string? problem) => problem is null
        ? new JsonObject { ["ready"] = true }
        : new JsonObject { ["ready"] = false, ["reason"] = problem };
}

/// <summary>Tells a supervisor listening on <c>NOTIFY_SOCKET</c> READY=1 once the host started, and STOPPING=1 as it stops.</summary>
internal sealed class SystemdNotify : IHostedLifecycleService
{
    private readonly SystemdNotifier _notifier = new();

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        Notify(ServiceState.Ready);
        return Task.CompletedTask;
    }

    public Task StoppingAsync(CancellationToken cancellationToken)
    {
        Notify(ServiceState.Stopping);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void Notify(ServiceState state)
    {
        if (_notifier.IsEnabled)
        {
            _notifier.Notify(state);
        }
    }
}
