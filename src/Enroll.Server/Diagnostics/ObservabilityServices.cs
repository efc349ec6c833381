using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Diagnostics;

/// <summary>Metrics exporters (Prometheus <c>/metrics</c>, OTLP), <c>/livez</c>, <c>/readyz</c> and <c>/healthz</c> (issue 15).</summary>
internal static class ObservabilityServices
{
    public static IServiceCollection AddEnrollObservability(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services;
    }

    public static WebApplication MapEnrollObservability(this WebApplication app) => app;
}
