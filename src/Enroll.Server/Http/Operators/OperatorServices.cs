using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Http.Operators;

/// <summary>Operator accounts, console sessions and the audit log (issue 15).</summary>
internal static class OperatorServices
{
    public static IServiceCollection AddEnrollOperators(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services;
    }

    public static WebApplication MapEnrollOperators(this WebApplication app) => app;
}
