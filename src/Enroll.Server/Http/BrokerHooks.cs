using System.Text.Json;
using Enroll.Protocol;
using Enroll.Server.Broker;
using Enroll.Server.Data;
using Enroll.Server.Diagnostics;
using Enroll.Server.Tokens;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Http;

/// <summary>
/// The authentication and authorization webhooks an external broker calls, in the formats of EMQX 5 (HTTP
/// authenticator and authorizer) and VerneMQ (<c>vmq_webhooks</c>: <c>auth_on_register</c>, <c>auth_on_subscribe</c>,
/// <c>auth_on_publish</c> and their <c>_m5</c> forms). A device connects with username = its Device ID and password = its
/// access token, which is checked like the embedded broker checks it (signature, claims, revocation); a client without a
/// username is a registering client. Publish and subscribe are decided by the embedded broker's <see cref="AccessPolicy"/>:
/// requests, the server's keys, the client's own <c>enroll/v1/clients/{client ID}/</c> topics and, for a device, its own
/// namespace. The server's own broker user is left to the broker's other authenticators (<c>ignore</c>/<c>next</c>).
/// The broker presents the key in <c>{data}/broker-hooks.key</c> as <c>X-Enroll-Broker-Key</c> or <c>?key=</c>.
/// </summary>
internal static partial class BrokerHooks
{
    /// <summary>The key file in the data folder.</summary>
    public const string KeyFileName = "broker-hooks.key";

    /// <summary>The header (or query parameter <c>key</c>) the broker presents the key in.</summary>
    public const string KeyHeader = "X-Enroll-Broker-Key";

    /// <summary>Largest hook body read; a publish hook carries the payload, which the decision never needs.</summary>
    private const int MaxBodyBytes = 2 * 1024 * 1024;

    public static IEndpointRouteBuilder MapBrokerHooks(this IEndpointRouteBuilder endpoints)
    {
        var services = endpoints.ServiceProvider;
        var options = services.GetRequiredService<IOptions<EnrollServerOptions>>().Value;
        var key = AdminKey.LoadOrCreate(Path.GetFullPath(options.DataDirectory), KeyFileName, "ebk_", "broker hook key");
        var hooks = new Hooks(
            key,
            services.GetRequiredService<DeviceTokenValidator>(),
            services.GetRequiredService<ServerMetrics>(),
            options.BrokerUsername,
            services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(BrokerHooks).FullName!),
            services.GetRequiredService<Refusals.RefusalLog>());
        var group = endpoints.MapGroup("/broker");
        group.MapPost("/emqx/authn", (Delegate)hooks.EmqxAuthenticateAsync);
        group.MapPost("/emqx/authz", (Delegate)hooks.EmqxAuthorizeAsync);
        group.MapPost("/vernemq", (Delegate)hooks.VerneMqAsync);
        return endpoints;
    }

    /// <summary>What a hook decides.</summary>
    internal enum Verdict
    {
        Allow,
        Deny,

        /// <summary>Not Enroll's to decide (the server's own user): the broker asks its next authenticator.</summary>
        Pass,
    }

    private sealed partial class Hooks(AdminKey key, DeviceTokenValidator tokens, ServerMetrics metrics, string serverUser, ILogger logger, Refusals.RefusalLog refusals)
    {
        public async Task<IResult> EmqxAuthenticateAsync(HttpContext http)
        {
            if (await ReadAsync(http).ConfigureAwait(false) is not { } body)
            {
                return Refusal(http);
            }

            var clientId = Text(body, "clientid");
            var (verdict, expiresAt) = await AuthenticateAsync(clientId, Text(body, "username"), Text(body, "password"), http.RequestAborted).ConfigureAwait(false);
            return verdict switch
            {
                // EMQX 5.8+ ends the session when the token expires, so an expired token never keeps a connection.
                Verdict.Allow when expiresAt is { } expiry => Json($$"""{"result":"allow","is_superuser":false,"expire_at":{{expiry.ToUnixTimeSeconds()}}}"""),
                Verdict.Allow => Json("""{"result":"allow","is_superuser":false}"""),
                Verdict.Deny => Json("""{"result":"deny"}"""),
                _ => Json("""{"result":"ignore"}"""),
            };
        }

        public async Task<IResult> EmqxAuthorizeAsync(HttpContext http)
        {
            if (await ReadAsync(http).ConfigureAwait(false) is not { } body)
            {
                return Refusal(http);
            }

            var action = Text(body, "action");
            var verdict = action switch
            {
                "publish" => Authorize(Text(body, "clientid"), Text(body, "username"), Text(body, "topic"), subscribe: false),
                "subscribe" => Authorize(Text(body, "clientid"), Text(body, "username"), Text(body, "topic"), subscribe: true),
                _ => Verdict.Deny,
            };
            return verdict switch
            {
                Verdict.Allow => Json("""{"result":"allow"}"""),
                Verdict.Deny => Json("""{"result":"deny"}"""),
                _ => Json("""{"result":"ignore"}"""),
            };
        }

        public async Task<IResult> VerneMqAsync(HttpContext http)
        {
            if (await ReadAsync(http).ConfigureAwait(false) is not { } body)
            {
                return Refusal(http);
            }

            var hook = http.Request.Headers["vernemq-hook"].ToString();
            var clientId = Text(body, "client_id");
            var username = Text(body, "username");
            Verdict verdict;
            switch (hook)
            {
                case "auth_on_register" or "auth_on_register_m5":
                    verdict = (await AuthenticateAsync(clientId, username, Text(body, "password"), http.RequestAborted).ConfigureAwait(false)).Verdict;
                    break;
                case "auth_on_publish" or "auth_on_publish_m5":
                    verdict = Authorize(clientId, username, Text(body, "topic"), subscribe: false);
                    break;
                case "auth_on_subscribe" or "auth_on_subscribe_m5":
                    verdict = AuthorizeAll(clientId, username, body);
                    break;
                default:
                    LogUnknownHook(logger, hook);
                    return Json("""{"result":"next"}""");
            }

            return verdict switch
            {
                Verdict.Allow => Json("""{"result":"ok"}"""),
                Verdict.Deny => Json("""{"result":{"error":"not_allowed"}}"""),
                _ => Json("""{"result":"next"}"""),
            };
        }

        /// <summary>A device by its access token, a registering client without a username, the server's user passed on.</summary>
        private async Task<(Verdict Verdict, DateTimeOffset? ExpiresAt)> AuthenticateAsync(string? clientId, string? username, string? password, CancellationToken cancellationToken)
        {
            if (string.Equals(username, serverUser, StringComparison.Ordinal))
            {
                return (Verdict.Pass, null);
            }

            if (string.IsNullOrEmpty(clientId) || !EnrollIdentifiers.IsValid(clientId))
            {
                metrics.ConnectionRefused("invalid_client_id");
                return (Verdict.Deny, null);
            }

            if (string.IsNullOrEmpty(username))
            {
                // A registering client: it may only publish requests and read its own client topics (AccessPolicy).
                metrics.ConnectionAccepted("anonymous");
                return (Verdict.Allow, null);
            }

            if (string.IsNullOrEmpty(password))
            {
                metrics.ConnectionRefused("no_token");
                return (Verdict.Deny, null);
            }

            var check = await tokens.ValidateAccessTokenAsync(password, username, cancellationToken).ConfigureAwait(false);
            if (!check.IsValid)
            {
                metrics.ConnectionRefused("bad_token");
                refusals.Record(Refusals.RefusalLog.CredentialRefused, "access token: " + (check.Failure ?? "invalid token"), username);
                LogRefused(logger, username, check.Failure ?? "invalid token");
                return (Verdict.Deny, null);
            }

            metrics.ConnectionAccepted("device");
            return (Verdict.Allow, check.Token!.ExpiresAt);
        }

        /// <summary>
        /// The broker has authenticated the username at connect (through <see cref="AuthenticateAsync"/>), so a username
        /// here is the Device ID its token proved; none is a registering client.
        /// </summary>
        private Verdict Authorize(string? clientId, string? username, string? topic, bool subscribe)
        {
            if (string.Equals(username, serverUser, StringComparison.Ordinal))
            {
                return Verdict.Pass;
            }

            if (string.IsNullOrEmpty(clientId) || string.IsNullOrEmpty(topic))
            {
                return Verdict.Deny;
            }

            var deviceId = string.IsNullOrEmpty(username) ? null : username;
            var allowed = subscribe ? AccessPolicy.CanSubscribe(topic, clientId, deviceId) : AccessPolicy.CanPublish(topic, clientId, deviceId);
            if (!allowed)
            {
                metrics.AccessDenied(subscribe ? "subscribe" : "publish");
            }

            return allowed ? Verdict.Allow : Verdict.Deny;
        }

        /// <summary>VerneMQ asks for every filter of a SUBSCRIBE at once: allowed only when each one is.</summary>
        private Verdict AuthorizeAll(string? clientId, string? username, JsonElement body)
        {
            if (!body.TryGetProperty("topics", out var topics) || topics.ValueKind != JsonValueKind.Array || topics.GetArrayLength() == 0)
            {
                return Verdict.Deny;
            }

            foreach (var entry in topics.EnumerateArray())
            {
                var verdict = Authorize(clientId, username, entry.ValueKind == JsonValueKind.Object ? Text(entry, "topic") : null, subscribe: true);
                if (verdict != Verdict.Allow)
                {
                    return verdict;
                }
            }

            return Verdict.Allow;
        }

        /// <summary>The hook's JSON body, when the key is right and the body is a JSON object; otherwise null.</summary>
        private async Task<JsonElement?> ReadAsync(HttpContext http)
        {
            var presented = http.Request.Headers[KeyHeader].ToString() is { Length: > 0 } header ? header : http.Request.Query["key"].ToString();
            if (!key.Matches(presented))
            {
                metrics.AdminKeyFailure("broker_hook_unauthorized");
                http.Items[nameof(Refusal)] = StatusCodes.Status401Unauthorized;
                return null;
            }

            if (http.Request.ContentLength is > MaxBodyBytes)
            {
                http.Items[nameof(Refusal)] = StatusCodes.Status413PayloadTooLarge;
                return null;
            }

            try
            {
                using var document = await JsonDocument.ParseAsync(http.Request.Body, cancellationToken: http.RequestAborted).ConfigureAwait(false);
                if (document.RootElement.ValueKind == JsonValueKind.Object)
                {
                    return document.RootElement.Clone();
                }
            }
            catch (JsonException)
            {
            }

            http.Items[nameof(Refusal)] = StatusCodes.Status400BadRequest;
            return null;
        }

        /// <summary>
        /// A hook call that is not the broker's (wrong key) or cannot be read. EMQX treats any status but 200/204 as
        /// "ignore" and VerneMQ as an error, so a misconfigured broker admits nobody through these hooks.
        /// </summary>
        private static IResult Refusal(HttpContext http) =>
            Results.Problem(
                statusCode: http.Items[nameof(Refusal)] as int? ?? StatusCodes.Status400BadRequest,
                title: http.Items[nameof(Refusal)] as int? == StatusCodes.Status401Unauthorized
                    ? $"the broker hook key is missing or wrong (send the key in {KeyFileName} as {KeyHeader} or ?key=)"
                    : "the hook body must be a JSON object");

        private static IResult Json(string body) => Results.Content(body, "application/json");

        private static string? Text(JsonElement body, string name) =>
            body.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

        [LoggerMessage(30, LogLevel.Information, "Broker hook refused device {DeviceId}: {Reason}")]
        private static partial void LogRefused(ILogger logger, string deviceId, string reason);

        [LoggerMessage(31, LogLevel.Warning, "Broker hook '{Hook}' is not one Enroll answers; passed to the next plugin")]
        private static partial void LogUnknownHook(ILogger logger, string hook);
    }
}
