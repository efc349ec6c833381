using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Twins;
using Enroll.Server.Registry;
using Enroll.Server.Twins;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Net.Http.Headers;

namespace Enroll.Server.Http;

/// <summary>
/// The twin routes of the operator API (docs/twins.md): read a device's twin with its versions as the ETag, patch its
/// desired document (optionally only at a given version, <c>If-Match</c>), and patch the desired document of every
/// device of an organisation that meets a condition. The admin key is checked by <see cref="AdminGate"/>.
/// </summary>
internal static class TwinApi
{
    /// <summary>The media types a desired patch may be sent as (RFC 7396 names the first).</summary>
    public static readonly string[] PatchMediaTypes = ["application/merge-patch+json", "application/json"];

    public static void MapTwinApi(this IEndpointRouteBuilder api)
    {
        api.MapGet("/devices/{id}/twin", GetTwinAsync);
        api.MapPatch("/devices/{id}/twin/desired", PatchDesiredAsync);
        api.MapPatch("/twins/desired", PatchFleetAsync);
    }

    /// <summary>The ETag of a twin: both versions, <c>"d{desired}-r{reported}"</c>; it changes whenever either document does.</summary>
    public static string ETagOf(TwinRecord twin) => string.Create(CultureInfo.InvariantCulture, $"\"d{twin.DesiredVersion}-r{twin.ReportedVersion}\"");

    /// <summary>
    /// The desired version an <c>If-Match</c> value names: the twin's ETag (<c>"d5-r2"</c>, weak or not; only the desired
    /// part counts) or a bare number (<c>5</c> or <c>"5"</c>); null for <c>*</c> (any version). False when it is neither.
    /// </summary>
    public static bool TryParseIfMatch(string text, out long? version)
    {
        version = null;
        var value = text.Trim();
        if (value == "*")
        {
            return true;
        }

        if (value.StartsWith("W/", StringComparison.Ordinal))
        {
            value = value[2..];
        }

        if (value.Length >= 2 && value[0] == '"' && value[^1] == '"')
        {
            value = value[1..^1];
        }

        if (value.StartsWith('d'))
        {
            var dash = value.IndexOf("-r", StringComparison.Ordinal);
            value = dash > 0 ? value[1..dash] : value[1..];
        }

        if (long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
        {
            version = parsed;
            return true;
        }

        return false;
    }

    /// <summary>The twin; with <c>If-None-Match</c> naming its current ETag, 304 Not Modified and no body (a poller's cheap "still the same?").</summary>
    private static async Task<IResult> GetTwinAsync(string id, ITwinStore twins, HttpRequest http, CancellationToken cancellationToken)
    {
        var twin = await twins.GetTwinAsync(id, cancellationToken).ConfigureAwait(false);
        if (twin is null)
        {
            return NoDevice(id);
        }

        var etag = ETagOf(twin);
        if (http.Headers.IfNoneMatch.SelectMany(v => (v ?? string.Empty).Split(',', StringSplitOptions.TrimEntries)).Any(v => v == "*" || v == etag || v == "W/" + etag))
        {
            http.HttpContext.Response.Headers.ETag = etag;
            return TypedResults.StatusCode(StatusCodes.Status304NotModified);
        }

        return Twin(twin, http.HttpContext.Response);
    }

    private static async Task<IResult> PatchDesiredAsync(string id, HttpRequest http, TwinService service, ITwinStore twins, CancellationToken cancellationToken)
    {
        long? ifVersion = null;
        if (http.Headers.IfMatch.Count > 0)
        {
            if (http.Headers.IfMatch.Count > 1 || !TryParseIfMatch(http.Headers.IfMatch[0]!, out ifVersion))
            {
                return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid If-Match", "If-Match must name one desired version: the twin's ETag (\"d5-r2\") or a number (5)");
            }
        }

        if (UnsupportedMediaType(http) is { } unsupported)
        {
            return unsupported;
        }

        var (patch, problem) = await ReadPatchAsync(http, cancellationToken).ConfigureAwait(false);
        if (patch is null)
        {
            return problem!;
        }

        var outcome = await service.PatchDesiredAsync(id, patch, ifVersion, cancellationToken).ConfigureAwait(false);
        var twin = outcome.Result == DesiredPatchResult.NoDevice ? null : await twins.GetTwinAsync(id, cancellationToken).ConfigureAwait(false);
        if (twin is null)
        {
            return NoDevice(id);
        }

        switch (outcome.Result)
        {
            case DesiredPatchResult.Applied:
                return Twin(twin, http.HttpContext.Response);
            case DesiredPatchResult.VersionMismatch:
                http.HttpContext.Response.Headers.ETag = ETagOf(twin);
                return AdminApi.Problem(
                    StatusCodes.Status412PreconditionFailed,
                    "version mismatch",
                    string.Create(CultureInfo.InvariantCulture, $"the desired version of device '{id}' is {outcome.Version}, not {ifVersion} (If-Match); read the twin again and patch from there"));
            default:
                return AdminApi.Problem(StatusCodes.Status400BadRequest, "over the twin limits", outcome.Reason ?? "the patch is over the twin limits");
        }
    }

    /// <summary>
    /// <c>PATCH /api/twins/desired?org=ORG[&amp;where=KEY=VALUE...]</c> with the merge patch as the body, or, without
    /// <c>org</c> in the query, a <see cref="FleetTwinPatchRequest"/> body. Every condition must hold.
    /// </summary>
    private static async Task<IResult> PatchFleetAsync(HttpRequest http, TwinService service, CancellationToken cancellationToken)
    {
        if (UnsupportedMediaType(http) is { } unsupported)
        {
            return unsupported;
        }

        string? org;
        List<string> where;
        JsonObject? patch;
        if (http.Query.ContainsKey("org"))
        {
            org = http.Query["org"].ToString();
            where = [.. http.Query["where"].Where(w => w is not null).Select(w => w!)];
            IResult? problem;
            (patch, problem) = await ReadPatchAsync(http, cancellationToken).ConfigureAwait(false);
            if (patch is null)
            {
                return problem!;
            }
        }
        else
        {
            FleetTwinPatchRequest? body;
            try
            {
                body = await JsonSerializer.DeserializeAsync(http.Body, TwinAdminJsonContext.Default.FleetTwinPatchRequest, cancellationToken).ConfigureAwait(false);
            }
            catch (JsonException ex)
            {
                return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", $"expected {{\"org\": \"...\", \"where\": \"KEY=VALUE\", \"patch\": {{...}}}} (or ?org= in the query and the patch as the body): {ex.Message}");
            }

            org = body?.Org;
            where = body?.Where is { } condition ? [condition] : [];
            patch = body?.Patch;
            if (patch is null)
            {
                return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", "patch is required: a JSON object, the merge patch (RFC 7396) to apply to each device's desired document");
            }
        }

        if (!EnrollIdentifiers.IsValid(org))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid org", $"org is required and must be {EnrollIdentifiers.Rule}");
        }

        var conditions = new List<TwinCondition>();
        foreach (var text in where)
        {
            if (TwinCondition.Parse(text, out var problem) is not { } condition)
            {
                return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid where", problem!);
            }

            conditions.Add(condition);
        }

        if (TwinLimits.CheckPatch(patch) is { } refusal)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "over the twin limits", refusal);
        }

        var outcome = await service.PatchDesiredWhereAsync(new TwinFilter(org!, conditions), patch).ConfigureAwait(false);
        return TypedResults.Json(
            new FleetTwinPatchResult { Touched = outcome.Touched.Count, Refused = outcome.Refused, Refusal = outcome.FirstRefusal },
            TwinAdminJsonContext.Default.FleetTwinPatchResult);
    }

    private static IResult? UnsupportedMediaType(HttpRequest http)
    {
        if (http.ContentType is null)
        {
            return null;
        }

        return MediaTypeHeaderValue.TryParse(http.ContentType, out var type) && PatchMediaTypes.Contains(type.MediaType.Value, StringComparer.OrdinalIgnoreCase)
            ? null
            : AdminApi.Problem(StatusCodes.Status415UnsupportedMediaType, "unsupported media type", $"send the patch as {string.Join(" or ", PatchMediaTypes)}");
    }

    /// <summary>The body as a merge patch: a JSON object (a twin document is always one, so a patch replacing it with anything else is refused).</summary>
    private static async Task<(JsonObject? Patch, IResult? Problem)> ReadPatchAsync(HttpRequest http, CancellationToken cancellationToken)
    {
        JsonNode? node;
        try
        {
            node = await JsonNode.ParseAsync(http.Body, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            return (null, AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", $"the body is not JSON: {ex.Message}"));
        }

        return node is JsonObject patch
            ? (patch, null)
            : (null, AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", "expected a JSON object: a merge patch (RFC 7396) to the desired document, e.g. {\"interval\": 30, \"old\": null}"));
    }

    private static Microsoft.AspNetCore.Http.HttpResults.JsonHttpResult<TwinInfo> Twin(TwinRecord twin, HttpResponse response)
    {
        response.Headers.ETag = ETagOf(twin);
        return TypedResults.Json(
            new TwinInfo
            {
                DeviceId = twin.DeviceId,
                Desired = twin.DesiredDocument(),
                DesiredVersion = twin.DesiredVersion,
                Reported = twin.ReportedDocument(),
                ReportedVersion = twin.ReportedVersion,
                UpdatedAt = twin.UpdatedAt,
            },
            TwinAdminJsonContext.Default.TwinInfo);
    }

    private static IResult NoDevice(string id) => AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'");
}
