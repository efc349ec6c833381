using Enroll.Protocol.Admin;
using Enroll.Server.Refusals;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>The fleet overview: <c>GET /api/overview</c>, <c>GET /api/refusals</c>, the refusal log and its sweeper (issue 15).</summary>
internal static class OverviewServices
{
    /// <summary>Outboxes the overview lists.</summary>
    public const int OutboxRows = 10;

    /// <summary>Refusals the overview lists (newest first).</summary>
    public const int RefusalRows = 20;

    /// <summary>The default page of <c>GET /api/refusals</c>.</summary>
    public const int DefaultRefusalPage = 100;

    public static IServiceCollection AddEnrollOverview(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton<RefusalLog>();
        services.AddHostedService<RefusalWriter>();
        services.AddHostedService<RefusalSweeper>();
        return services;
    }

    // AdminGate authenticates every /api route (admin key, operator key or console session): any operator may read these.
    public static RouteGroupBuilder MapEnrollOverview(this RouteGroupBuilder api)
    {
        api.MapGet("/overview", GetOverviewAsync);
        api.MapGet("/refusals", ListRefusalsAsync);
        return api;
    }

    private static async Task<IResult> GetOverviewAsync(IRefusalStore store, IDeviceStatusStore outboxes, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var now = timeProvider.GetUtcNow();
        var overview = new FleetOverview
        {
            DevicesByStatus = await store.CountDevicesByStatusAsync(cancellationToken).ConfigureAwait(false),
            PendingOperations = await store.CountPendingOperationsAsync(now, cancellationToken).ConfigureAwait(false),
            Registrations = await store.CountPerMinuteAsync(FleetSeries.Registrations, now, cancellationToken).ConfigureAwait(false),
            Approvals = await store.CountPerMinuteAsync(FleetSeries.Approvals, now, cancellationToken).ConfigureAwait(false),
            Messages = await store.CountPerMinuteAsync(FleetSeries.Messages, now, cancellationToken).ConfigureAwait(false),
            Outboxes = await outboxes.DeepestOutboxesAsync(OutboxRows, cancellationToken).ConfigureAwait(false),
            Refusals = await store.ListRefusalsAsync(RefusalRows, cancellationToken).ConfigureAwait(false),
        };
        return TypedResults.Json(overview, ConsoleJsonContext.Default.FleetOverview);
    }

    private static async Task<IResult> ListRefusalsAsync(IRefusalStore store, string? limit, CancellationToken cancellationToken)
    {
        var size = DefaultRefusalPage;
        if (limit is not null && !(int.TryParse(limit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out size) && size is >= 1 and <= AdminApi.MaxPageSize))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid limit", $"limit must be 1 to {AdminApi.MaxPageSize}");
        }

        var refusals = await store.ListRefusalsAsync(size, cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<RefusalInfo>(refusals), ConsoleJsonContext.Default.ItemListRefusalInfo);
    }
}
