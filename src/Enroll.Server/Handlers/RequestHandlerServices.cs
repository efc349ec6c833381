using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Handlers;

/// <summary>Binds each request declaration of <see cref="EnrollRequests"/> to its handler, once.</summary>
internal static class RequestHandlerServices
{
    public static IServiceCollection AddRequestHandlers(this IServiceCollection services)
    {
        services.AddRequestHandler(EnrollRequests.Register, sp => ActivatorUtilities.CreateInstance<RegistrationHandler>(sp));
        services.AddRequestHandler(EnrollRequests.ProvisioningInit, sp => ActivatorUtilities.CreateInstance<ProvisioningInitHandler>(sp));
        services.AddRequestHandler(EnrollRequests.ProvisioningComplete, sp => ActivatorUtilities.CreateInstance<ProvisioningCompleteHandler>(sp));
        services.AddRequestHandler(EnrollRequests.TokensRefresh, sp => ActivatorUtilities.CreateInstance<TokenRefreshHandler>(sp));
        services.AddRequestHandler(EnrollRequests.TwinGet, sp => ActivatorUtilities.CreateInstance<TwinGetHandler>(sp));
        services.AddRequestHandler(EnrollRequests.TwinReport, sp => ActivatorUtilities.CreateInstance<TwinReportHandler>(sp));
        services.AddRequestHandler(EnrollRequests.CommandsPending, sp => ActivatorUtilities.CreateInstance<CommandsPendingHandler>(sp));
        services.AddRequestHandler(EnrollRequests.CommandResult, sp => ActivatorUtilities.CreateInstance<CommandResultHandler>(sp));
        services.AddRequestHandler(EnrollRequests.TransferStatus, sp => ActivatorUtilities.CreateInstance<TransferStatusHandler>(sp));
        services.AddRequestHandler(EnrollRequests.DeviceStatus, sp => ActivatorUtilities.CreateInstance<DeviceStatusHandler>(sp));
        return services;
    }

    /// <summary>
    /// Serves <paramref name="request"/> with the handler <paramref name="handler"/> creates. The dispatcher refuses to
    /// start unless every declaration of <see cref="EnrollRequests.All"/> has exactly one.
    /// </summary>
    public static IServiceCollection AddRequestHandler<TRequest, TResponse>(
        this IServiceCollection services,
        EnrollRequest<TRequest, TResponse> request,
        Func<IServiceProvider, IRequestHandler<TRequest, TResponse>> handler)
        where TRequest : class, IEnrollRequest
        where TResponse : class, IEnrollResponse =>
        services.AddSingleton<RequestRoute>(sp => new RequestRoute<TRequest, TResponse>(request, handler(sp)));

    /// <summary>
    /// The routes, checked against the table: one per declaration of <see cref="EnrollRequests.All"/>, none for anything else.
    /// </summary>
    public static Dictionary<string, RequestRoute> CheckedRoutes(IEnumerable<RequestRoute> routes)
    {
        var byTopic = new Dictionary<string, RequestRoute>(StringComparer.Ordinal);
        foreach (var route in routes)
        {
            if (!EnrollRequests.All.Contains(route.Request))
            {
                throw new InvalidOperationException($"the handler for {route.Request} serves a request that is not in EnrollRequests.All");
            }

            if (!byTopic.TryAdd(route.Topic, route))
            {
                throw new InvalidOperationException($"{route.Request} has more than one handler");
            }
        }

        var missing = EnrollRequests.All.Where(r => !byTopic.ContainsKey(r.Topic)).ToList();
        if (missing.Count > 0)
        {
            throw new InvalidOperationException($"no handler for {string.Join(", ", missing)}: bind one with AddRequestHandler");
        }

        return byTopic;
    }
}
