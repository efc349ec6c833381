using System.Text.Json;
using Enroll.Protocol.Admin;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Http.Operators;

/// <summary>Operator accounts, console sessions and the audit log (issue 15).</summary>
internal static partial class OperatorServices
{
    /// <summary>The default page of <c>GET /api/audit</c>.</summary>
    public const int DefaultAuditPage = 100;

    private static readonly OperatorJsonContext StrictJson = new(new JsonSerializerOptions(OperatorJsonContext.Default.Options)
    {
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    });

    public static IServiceCollection AddEnrollOperators(this IServiceCollection services, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton<OperatorAuth>();
        services.TryAddSingleton<AuditRecorder>();
        services.AddHostedService<SessionSweeper>();
        return services;
    }

    public static WebApplication MapEnrollOperators(this WebApplication app)
    {
        // The gate (AdminGate) authenticates everything here but POST /api/session, whose key is in the body.
        var api = app.MapGroup("/api");
        api.MapPost("/session", SignInAsync);
        api.MapGet("/session", GetSession);
        api.MapDelete("/session", SignOutAsync);
        api.MapPost("/operators", AddOperatorAsync);
        api.MapGet("/operators", ListOperatorsAsync);
        api.MapDelete("/operators/{name}", RemoveOperatorAsync);
        api.MapGet("/audit", ListAuditAsync);
        return app;
    }

    private static async Task<IResult> SignInAsync(HttpContext http, OperatorAuth auth, AdminGate gate, ILogger<OperatorAuth> logger, CancellationToken cancellationToken)
    {
        SignInRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Request.Body, StrictJson.SignInRequest, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", "expected a JSON object with key");
        }

        var remote = http.Connection.RemoteIpAddress?.ToString() ?? "?";
        var identity = await auth.AuthenticateKeyAsync(request?.Key, cancellationToken).ConfigureAwait(false);
        if (identity is null)
        {
            // A wrong key here is a wrong credential like any other: counted per address, 429 once out of attempts.
            if (await gate.CountFailureAsync(http, remote).ConfigureAwait(false))
            {
                return Results.Empty;
            }

            LogSignInFailed(logger, remote);
            return AdminApi.Problem(StatusCodes.Status401Unauthorized, "unauthorized", "the key is neither the admin key nor an operator's");
        }

        identity.Set(http);
        var (cookie, session) = await auth.CreateSessionAsync(identity, cancellationToken).ConfigureAwait(false);
        http.Response.Cookies.Append(OperatorAuth.CookieName, cookie, new CookieOptions
        {
            HttpOnly = true,
            SameSite = SameSiteMode.Strict,
            Secure = http.Request.IsHttps,
            Path = "/",
            MaxAge = auth.SessionLifetime,
            IsEssential = true,
        });
        http.Response.Headers.CacheControl = "no-store";
        LogSignedIn(logger, identity.Name, remote);
        return TypedResults.Json(Info(session), OperatorJsonContext.Default.SessionInfo);
    }

    private static IResult GetSession(HttpContext http) => http.Items.TryGetValue(SessionItem, out var value) && value is ConsoleSession session
            ? TypedResults.Json(Info(session), OperatorJsonContext.Default.SessionInfo)
            : AdminApi.Problem(StatusCodes.Status401Unauthorized, "no session", "this request carries no session cookie (a key in the Authorization header is not a session)");

    private static async Task<IResult> SignOutAsync(HttpContext http, IOperatorStore store, CancellationToken cancellationToken)
    {
        if (OperatorIdentity.Of(http) is not { SessionId: { } id })
        {
            return AdminApi.Problem(StatusCodes.Status401Unauthorized, "no session", "this request carries no session cookie");
        }

        await store.DeleteSessionAsync(id, cancellationToken).ConfigureAwait(false);
        ExpireCookie(http);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> AddOperatorAsync(HttpContext http, IOperatorStore store, TimeProvider timeProvider, ILogger<OperatorAuth> logger, CancellationToken cancellationToken)
    {
        if (AdminOnly(http) is { } refused)
        {
            return refused;
        }

        CreateOperatorRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Request.Body, StrictJson.CreateOperatorRequest, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", "expected a JSON object with name");
        }

        if (request?.Name is not { } name || !OperatorAuth.NamePattern().IsMatch(name) || name == OperatorIdentity.AdminName)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid name", "an operator's name is 2 to 64 characters: a lower-case letter, then lower-case letters, digits, '.', '_' or '-' (and not 'admin')");
        }

        AuditDetail.SetTarget(http, name);
        var key = OperatorAuth.NewOperatorKey();
        var account = new OperatorAccount(name, OperatorAuth.Hash(key), timeProvider.GetUtcNow(), OperatorIdentity.Of(http)?.Name, null);
        if (!await store.AddOperatorAsync(account, cancellationToken).ConfigureAwait(false))
        {
            return AdminApi.Problem(StatusCodes.Status409Conflict, "operator exists", $"an operator named '{name}' exists or existed (names are not reused)");
        }

        LogOperatorAdded(logger, name, account.CreatedBy ?? "?");
        http.Response.Headers.CacheControl = "no-store";
        return TypedResults.Json(new CreatedOperator { Operator = Info(account), Key = key }, OperatorJsonContext.Default.CreatedOperator, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListOperatorsAsync(IOperatorStore store, CancellationToken cancellationToken)
    {
        var accounts = await store.ListOperatorsAsync(cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<OperatorInfo>([.. accounts.Select(Info)]), OperatorJsonContext.Default.ItemListOperatorInfo);
    }

    private static async Task<IResult> RemoveOperatorAsync(string name, HttpContext http, IOperatorStore store, TimeProvider timeProvider, ILogger<OperatorAuth> logger, CancellationToken cancellationToken)
    {
        if (AdminOnly(http) is { } refused)
        {
            return refused;
        }

        if (!await store.RemoveOperatorAsync(name, timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false))
        {
            return AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no active operator named '{name}'");
        }

        LogOperatorRemoved(logger, name, OperatorIdentity.Of(http)?.Name ?? "?");
        var removed = (await store.ListOperatorsAsync(cancellationToken).ConfigureAwait(false)).First(o => o.Name == name);
        return TypedResults.Json(Info(removed), OperatorJsonContext.Default.OperatorInfo);
    }

    private static async Task<IResult> ListAuditAsync(HttpContext http, IAuditStore store, string? limit, string? before, string? @operator, string? action, CancellationToken cancellationToken)
    {
        var size = DefaultAuditPage;
        if (limit is not null && !(int.TryParse(limit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out size) && size is >= 1 and <= AdminApi.MaxPageSize))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid limit", $"limit must be 1 to {AdminApi.MaxPageSize}");
        }

        long? cursor = null;
        if (before is not null)
        {
            if (!long.TryParse(before, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id))
            {
                return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid before", "before is an audit entry's id (a whole number)");
            }

            cursor = id;
        }

        var entries = await store.ListAuditAsync(size, cursor, NullIfEmpty(@operator), NullIfEmpty(action), cancellationToken).ConfigureAwait(false);
        if (entries.Count == size)
        {
            var next = string.Join('&', new[] { ("limit", limit), ("before", entries[^1].Id.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("operator", @operator), ("action", action) }
                .Where(p => p.Item2 is not null).Select(p => $"{p.Item1}={Uri.EscapeDataString(p.Item2!)}"));
            http.Response.Headers.Link = $"</api/audit?{next}>; rel=\"next\"";
        }

        return TypedResults.Json(new ItemList<AuditEntry>(entries), OperatorJsonContext.Default.ItemListAuditEntry);
    }

    /// <summary>Where the gate leaves the request's session row (for <c>GET /api/session</c>).</summary>
    public static readonly object SessionItem = new();

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static IResult? AdminOnly(HttpContext http) =>
        OperatorIdentity.Of(http) is { IsAdmin: true }
            ? null
            : AdminApi.Problem(StatusCodes.Status403Forbidden, "forbidden", "only the admin (the admin key, or a session signed in with it) administers operators");

    private static void ExpireCookie(HttpContext http) =>
        http.Response.Cookies.Append(OperatorAuth.CookieName, string.Empty, new CookieOptions
        {
            HttpOnly = true,
            SameSite = SameSiteMode.Strict,
            Secure = http.Request.IsHttps,
            Path = "/",
            MaxAge = TimeSpan.Zero,
            Expires = DateTimeOffset.UnixEpoch,
        });

    private static SessionInfo Info(ConsoleSession session) =>
        new() { Operator = session.Operator, IsAdmin = session.IsAdmin, CsrfToken = session.CsrfToken, ExpiresAt = session.ExpiresAt };

    private static OperatorInfo Info(OperatorAccount account) =>
        new() { Name = account.Name, CreatedAt = account.CreatedAt, CreatedBy = account.CreatedBy, RemovedAt = account.RemovedAt };

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Console: {Operator} signed in from {Remote}")]
    private static partial void LogSignedIn(ILogger logger, string @operator, string remote);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Console: a sign-in from {Remote} was refused (wrong key)")]
    private static partial void LogSignInFailed(ILogger logger, string remote);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "Operator {Name} added by {By}")]
    private static partial void LogOperatorAdded(ILogger logger, string name, string by);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Information, Message = "Operator {Name} removed by {By}; its key and sessions no longer work")]
    private static partial void LogOperatorRemoved(ILogger logger, string name, string by);
}
