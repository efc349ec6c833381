using System.Globalization;
using Enroll.Protocol.Admin;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>Device status reports (<c>enroll/v1/devices/{id}/status</c>) and <c>GET /api/devices/{id}/history</c> (issue 15).</summary>
internal static class DeviceStatusServices
{
    /// <summary>The default page of <c>GET /api/devices/{id}/history</c>.</summary>
    public const int DefaultHistoryPage = 50;

    /// <summary>How many of a device's Registration Tokens in force the first history page lists.</summary>
    public const int LiveTokensShown = 5;

    public static IServiceCollection AddEnrollDeviceStatus(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services;
    }

    public static RouteGroupBuilder MapEnrollDeviceStatus(this RouteGroupBuilder api)
    {
        api.MapGet("/devices/{id}/history", HistoryAsync);
        api.MapGet("/devices/{id}/status", StatusAsync);
        return api;
    }

    /// <summary>
    /// The device's registration history, newest first, paged like <c>/api/audit</c>: <c>limit</c> (1 to
    /// <see cref="AdminApi.MaxPageSize"/>, default <see cref="DefaultHistoryPage"/>), <c>before</c> (an entry's
    /// <c>id</c>), and a <c>Link: rel="next"</c> header while there may be more. The first page also carries the outbox
    /// the device last reported and the expiries of its Registration Tokens in force.
    /// </summary>
    private static async Task<IResult> HistoryAsync(string id, HttpContext http, IDeviceStore devices, IDeviceStatusStore store, TimeProvider timeProvider, string? limit, string? before, CancellationToken cancellationToken)
    {
        var size = DefaultHistoryPage;
        if (limit is not null && !(int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out size) && size is >= 1 and <= AdminApi.MaxPageSize))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid limit", $"limit must be 1 to {AdminApi.MaxPageSize}");
        }

        DeviceHistoryCursor? cursor = null;
        if (before is not null && !DeviceHistoryCursor.TryParse(before, out cursor))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid before", "before is a history entry's id");
        }

        if (await devices.FindDeviceAsync(id, cancellationToken).ConfigureAwait(false) is not { } device)
        {
            return AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'");
        }

        var entries = await store.ListDeviceHistoryAsync(id, size, cursor, cancellationToken).ConfigureAwait(false);
        if (entries.Count == size)
        {
            var next = (limit is null ? string.Empty : $"limit={Uri.EscapeDataString(limit)}&") + $"before={Uri.EscapeDataString(entries[^1].Id)}";
            http.Response.Headers.Link = $"</api/devices/{Uri.EscapeDataString(id)}/history?{next}>; rel=\"next\"";
        }

        var outbox = cursor is null ? await store.FindDeviceStatusAsync(id, cancellationToken).ConfigureAwait(false) : null;
        // A revoked device's tokens are refused whatever their expiry: none is in force.
        var tokens = cursor is null && device.RevokedAt is null
            ? (await store.ListLiveRegistrationTokensAsync(id, timeProvider.GetUtcNow(), LiveTokensShown, cancellationToken).ConfigureAwait(false))
                .Select(t => new DeviceTokenInfo { TokenId = t.TokenId, IssuedAt = t.IssuedAt, ExpiresAt = t.ExpiresAt }).ToList()
            : cursor is null ? [] : null;
        return TypedResults.Json(new DeviceHistoryPage { DeviceId = id, Items = entries, Outbox = outbox, Tokens = tokens }, ConsoleJsonContext.Default.DeviceHistoryPage);
    }

    /// <summary>The outbox the device last reported; 404 when the device is unknown or never reported.</summary>
    private static async Task<IResult> StatusAsync(string id, IDeviceStatusStore store, CancellationToken cancellationToken) =>
        await store.FindDeviceStatusAsync(id, cancellationToken).ConfigureAwait(false) is { } report
            ? TypedResults.Json(report, ConsoleJsonContext.Default.DeviceOutboxInfo)
            : AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"device '{id}' has not reported its status");
}
