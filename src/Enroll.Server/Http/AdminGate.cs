using Enroll.Protocol.Admin;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Enroll.Server.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Http;

/// <summary>
/// What every <c>/api</c> request passes before anything reads its body: the credential is checked first, in order the
/// admin key or an operator's key as a bearer, else the console session cookie (whose state-changing requests must carry
/// the session's CSRF token in <c>X-Enroll-CSRF</c>); an unauthenticated request is answered without its body being read,
/// and every state-changing request is recorded in the audit log once answered, wrong keys are limited per remote address (429 with
/// Retry-After, logged once per interval), a body above <see cref="EnrollServerOptions.MaxAdminRequestBytes"/> is refused
/// with 413 before it is read, and a full registry disk is answered 503 with Retry-After and a JSON body, like every other
/// failure (never a 500 with an empty body).
/// </summary>
internal sealed partial class AdminGate
{
    private readonly OperatorAuth _auth;
    private readonly AuditRecorder _audit;
    private readonly FailureRateLimiter _failures;
    private readonly RegistryDiskFull _diskFull;
    private readonly ServerMetrics _metrics;
    private readonly ILogger<AdminGate> _logger;
    private readonly RepeatedCondition _unauthorized;
    private readonly RepeatedCondition _limited;
    private readonly int _maxBodyBytes;
    private readonly Refusals.RefusalLog _refusals;

    public AdminGate(OperatorAuth auth, AuditRecorder audit, IOptions<EnrollServerOptions> options, TimeProvider timeProvider, RegistryDiskFull diskFull, ServerMetrics metrics, [FromKeyedServices(FailureRateLimiter.AdminKeys)] FailureRateLimiter failures, ILogger<AdminGate> logger, Refusals.RefusalLog refusals)
    {
        _refusals = refusals;
        _auth = auth;
        _audit = audit;
        _diskFull = diskFull;
        _metrics = metrics;
        _logger = logger;
        var settings = options.Value;
        _maxBodyBytes = settings.MaxAdminRequestBytes;
        _failures = failures;
        _unauthorized = new RepeatedCondition(timeProvider, RepeatedCondition.DefaultInterval);
        _limited = new RepeatedCondition(timeProvider, RepeatedCondition.DefaultInterval);
    }

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (!context.Request.Path.StartsWithSegments("/api", StringComparison.Ordinal))
        {
            await next(context).ConfigureAwait(false);
            return;
        }

        var remote = context.Connection.RemoteIpAddress?.ToString() ?? "?";
        if (_failures.IsSourceLimited(remote, out var wait))
        {
            await RateLimitedAsync(context, remote, wait).ConfigureAwait(false);
            return;
        }

        var headers = context.Request.Headers;
        var presented = headers.Authorization.ToString() is { } auth && auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            ? auth["Bearer ".Length..].Trim()
            : headers["X-Enroll-Admin-Key"].ToString();
        var signIn = HttpMethods.IsPost(context.Request.Method) && context.Request.Path.Equals("/api/session", StringComparison.Ordinal);
        var cookie = context.Request.Cookies[OperatorAuth.CookieName];
        OperatorIdentity? identity = null;
        if (signIn)
        {
            // Unauthenticated: the endpoint checks the key in the body and counts a wrong one like the gate does.
        }
        else if (presented.Length > 0 || string.IsNullOrEmpty(cookie))
        {
            identity = await _auth.AuthenticateKeyAsync(presented, context.RequestAborted).ConfigureAwait(false);
            if (identity is null)
            {
                if (await CountFailureAsync(context, remote).ConfigureAwait(false))
                {
                    return;
                }

                if (_unauthorized.Occurred(out var count))
                {
                    Log.AdminUnauthorized(_logger, count, context.Request.Path, remote);
                }

                context.Response.Headers.WWWAuthenticate = "Bearer";
                // Says how to authenticate, and nothing about the server (such as where it keeps the key) to someone who cannot.
                await WriteAsync(context, StatusCodes.Status401Unauthorized, "unauthorized", "send the admin key as 'Authorization: Bearer <key>'").ConfigureAwait(false);
                return;
            }
        }
        else
        {
            // A console session. A wrong or expired cookie is not counted as a failed credential (a 256-bit random
            // value cannot be guessed, and a console left open past its session must still be able to sign in again).
            var session = await _auth.AuthenticateSessionAsync(cookie, context.RequestAborted).ConfigureAwait(false);
            if (session is null)
            {
                await WriteAsync(context, StatusCodes.Status401Unauthorized, "session expired", "the session ended (expired, signed out, or its operator was removed); sign in again").ConfigureAwait(false);
                return;
            }

            identity = new OperatorIdentity(session.Operator, session.IsAdmin, session.IdHash);
            identity.Set(context);
            context.Items[OperatorAuth.SessionItem] = session;
            if (AuditRecorder.Records(context.Request.Method) && !OperatorAuth.CsrfMatches(session, headers[OperatorAuth.CsrfHeader].ToString()))
            {
                await WriteAsync(context, StatusCodes.Status403Forbidden, "forbidden", "csrf token missing or wrong").ConfigureAwait(false);
                await _audit.RecordAsync(context).ConfigureAwait(false);
                return;
            }
        }

        identity?.Set(context);
        if (context.Request.ContentLength is { } length && length > _maxBodyBytes)
        {
            await WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "body too large", $"the request body is larger than {_maxBodyBytes} bytes").ConfigureAwait(false);
            return;
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = _maxBodyBytes;
        }

        try
        {
            await next(context).ConfigureAwait(false);
            if (AuditRecorder.Records(context.Request.Method))
            {
                await _audit.RecordAsync(context).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (DiskFull.Is(ex) && !context.Response.HasStarted)
        {
            _diskFull.Refused("HTTP " + context.Request.Method + " " + context.Request.Path, ex);
            context.Response.Clear();
            context.Response.Headers.RetryAfter = _diskFull.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "disk full", $"the server cannot store anything now (its disk is full); try again in {_diskFull.RetryAfterSeconds} s").ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex) when (!context.Response.HasStarted)
        {
            // Kestrel's own refusals (a body above the limit without a Content-Length, a malformed request).
            context.Response.Clear();
            await WriteAsync(context, ex.StatusCode, "bad request", ex.Message).ConfigureAwait(false);
        }
        catch (Exception ex) when (!context.Response.HasStarted && ex is not OperationCanceledException)
        {
            LogFailed(_logger, context.Request.Method, context.Request.Path, ex);
            context.Response.Clear();
            await WriteAsync(context, StatusCodes.Status500InternalServerError, "internal error", "the server failed to handle the request; see its log").ConfigureAwait(false);
            if (AuditRecorder.Records(context.Request.Method))
            {
                // An action that failed is still an action someone tried: the log shows it, with its 500.
                await _audit.RecordAsync(context).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Counts one wrong credential of <paramref name="remote"/> (in the registry, so every instance refuses the address
    /// once it is out of attempts); true when the request was answered 429 instead.
    /// </summary>
    public async Task<bool> CountFailureAsync(HttpContext context, string remote)
    {
        if (await _failures.ReserveAsync(null, remote, context.RequestAborted).ConfigureAwait(false) is { } refill)
        {
            await RateLimitedAsync(context, remote, refill).ConfigureAwait(false);
            return true;
        }

        await _failures.FailedAsync(null, remote, CancellationToken.None).ConfigureAwait(false);
        _metrics.AdminKeyFailure("unauthorized");
        _refusals.Record(Refusals.RefusalLog.CredentialRefused, "admin or operator key", remote);
        return false;
    }

    private Task RateLimitedAsync(HttpContext context, string remote, TimeSpan wait)
    {
        _metrics.AdminKeyFailure("rate_limited");
        _refusals.Record(Refusals.RefusalLog.RateLimited, "admin or operator key", remote);
        if (_limited.Occurred(out var count))
        {
            LogRateLimited(_logger, count, remote);
        }

        var seconds = (int)Math.Ceiling(Math.Max(1, wait.TotalSeconds));
        context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return WriteAsync(context, StatusCodes.Status429TooManyRequests, "too many attempts", $"too many requests without a valid admin key from this address; try again in {seconds} s");
    }

    public static Task WriteAsync(HttpContext context, int status, string title, string detail)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/problem+json";
        return context.Response.WriteAsJsonAsync(new ApiProblem { Title = title, Status = status, Detail = detail }, AdminJsonContext.Default.ApiProblem, "application/problem+json");
    }

    [LoggerMessage(EventId = 210, Level = LogLevel.Warning, Message = "HTTP API: {Count} request(s) from {Remote} refused (429): too many without a valid admin key")]
    private static partial void LogRateLimited(ILogger logger, long count, string remote);

    [LoggerMessage(EventId = 211, Level = LogLevel.Error, Message = "HTTP API: {Method} {Path} failed")]
    private static partial void LogFailed(ILogger logger, string method, string path, Exception exception);
}
