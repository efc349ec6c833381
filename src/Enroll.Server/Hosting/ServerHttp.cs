using System.Text.Json;
using Enroll.Protocol.Admin;
using Enroll.Server.WebConsole;
using Enroll.Server.Http;
using Enroll.Server.Http.ConsoleApi;
using Enroll.Server.Http.Operators;
using Enroll.Server.Observability;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server;

/// <summary>The server's HTTP side: its listeners, and its pipeline with what the host's hooks added.</summary>
internal static class ServerHttp
{
    /// <summary>Kestrel on the configured HTTP and HTTPS ports, and the API's JSON settings.</summary>
    public static void UseEnrollHttp(this WebApplicationBuilder builder, EnrollServerOptions options, ServerTls tls, System.Net.IPAddress bind)
    {
        builder.WebHost.UseKestrel(kestrel =>
        {
            // The API's bodies are small; a larger one is refused (413) as it arrives instead of being buffered.
            kestrel.Limits.MaxRequestBodySize = options.MaxAdminRequestBytes;
            if (!options.NoPlaintext)
            {
                kestrel.Listen(bind, options.HttpPort);
            }

            if (tls.Certificate is { } certificate)
            {
                kestrel.Listen(bind, options.HttpsPort, listen => listen.UseHttps(https =>
                {
                    https.ServerCertificate = certificate;
                    https.ServerCertificateChain = tls.Chain;
                }));
            }
        });
        builder.Services.ConfigureHttpJsonOptions(json =>
        {
            json.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
            json.SerializerOptions.TypeInfoResolverChain.Insert(0, AdminJsonContext.Default);
            json.SerializerOptions.TypeInfoResolverChain.Insert(1, OperatorJsonContext.Default);
            json.SerializerOptions.TypeInfoResolverChain.Insert(2, ConsoleJsonContext.Default);
            json.SerializerOptions.UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow;
        });
    }

    /// <summary>
    /// The admin-key gate first (it guards <c>/api</c>), then the middleware the hooks added, then the server's endpoints
    /// and the hooks' endpoints.
    /// </summary>
    public static void MapEnrollHttp(this WebApplication app, EnrollServerBuilder server)
    {
        var gate = app.Services.GetRequiredService<AdminGate>();
        app.Use((context, next) => gate.InvokeAsync(context, next));
        foreach (var middleware in server.Middleware)
        {
            app.Use(middleware);
        }

        app.MapEnrollObservability();
        app.MapEnrollApi();
        app.MapEnrollOperators();
        app.MapEnrollConsoleApi();
        app.MapEnrollConsole();
        if (app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EnrollServerOptions>>().Value.BrokerHooks)
        {
            app.MapBrokerHooks();
        }

        foreach (var map in server.Endpoints)
        {
            map(app);
        }
    }
}
