using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Admin;
using Enroll.Server.Data;
using Enroll.Server.Diagnostics;
using Enroll.Server.Provisioning;
using Enroll.Server.ProvisioningTokens;
using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Http;

/// <summary>The operator HTTP API (admin key required) and the public endpoints (JWKS, health).</summary>
internal static class AdminApi
{
    public static void MapEnrollApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => TypedResults.Text("ok\n"));
        app.MapGet("/.well-known/jwks.json", (PublishedKeys keys) => TypedResults.Json(keys.KeySet, AdminJsonContext.Default.ServerKeySet));

        var api = app.MapGroup("/api").AddEndpointFilter<AdminKeyFilter>();
        api.MapPost("/tokens", CreateTokenAsync);
        api.MapGet("/tokens", ListTokensAsync);
        api.MapGet("/tokens/{id}", GetTokenAsync);
        api.MapPost("/tokens/{id}/revoke", RevokeTokenAsync);
        api.MapGet("/devices", ListDevicesAsync);
        api.MapGet("/devices/{id}", GetDeviceAsync);
        api.MapPost("/devices/{id}/revoke", RevokeDeviceAsync);
        api.MapGet("/keys", (SigningKeyRing signing, EncryptionKeyRing encryption) => TypedResults.Json(KeyList(signing, encryption), AdminJsonContext.Default.ItemListServerKeyInfo));
        api.MapPost("/keys/rotate", (PublishedKeys keys, SigningKeyRing signing, EncryptionKeyRing encryption, ILogger<SigningKeyRing> logger) =>
        {
            var (signingKey, encryptionKey, pruned) = keys.Rotate();
            Log.KeysRotated(logger, signingKey, encryptionKey, pruned);
            return TypedResults.Json(KeyList(signing, encryption), AdminJsonContext.Default.ItemListServerKeyInfo);
        });
        api.MapGet("/messages", ListMessagesAsync);
        api.MapGet("/provisioning-operations", ListOperationsAsync);
        api.MapGet("/provisioning-operations/{id}", GetOperationAsync);
        api.MapPost("/provisioning-operations/{id}/approve", (string id, OperationService operations, HttpRequest http, CancellationToken ct) => DecideAsync(id, true, operations, http, ct));
        api.MapPost("/provisioning-operations/{id}/reject", (string id, OperationService operations, HttpRequest http, CancellationToken ct) => DecideAsync(id, false, operations, http, ct));
    }

    private static async Task<IResult> CreateTokenAsync(
        CreateProvisioningTokenRequest request,
        ProvisioningTokenService tokens,
        TimeProvider timeProvider,
        ILogger<ProvisioningTokenService> logger,
        CancellationToken cancellationToken)
    {
        if (!EnrollIdentifiers.IsValid(request.OrgId))
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid org_id", $"org_id is required and must be {EnrollIdentifiers.Rule}");
        }

        if (request.MaxUses is <= 0)
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid max_uses", "max_uses must be positive");
        }

        if (request.ExpiresAt is { } expires && expires <= timeProvider.GetUtcNow())
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid expires_at", "expires_at must be in the future");
        }

        if (request.RegistrationTokenLifetimeSeconds is <= 0)
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid registration_token_lifetime_seconds", "registration_token_lifetime_seconds must be positive");
        }

        if (request.Description is { Length: > 512 })
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid description", "description is longer than 512 characters");
        }

        var created = await tokens.CreateAsync(
            request.OrgId!,
            request.AutoApprove,
            request.ExpiresAt,
            request.MaxUses,
            request.Description,
            request.RegistrationTokenLifetimeSeconds is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
            cancellationToken).ConfigureAwait(false);
        Log.ProvisioningTokenCreated(logger, created.Record.Id, created.Record.OrgId, created.Record.AutoApprove);
        var info = ToInfo(created.Record, timeProvider.GetUtcNow()) with { Token = created.Secret };
        return TypedResults.Json(info, AdminJsonContext.Default.ProvisioningTokenInfo, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListTokensAsync(IRegistry registry, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var now = timeProvider.GetUtcNow();
        var tokens = await registry.ListProvisioningTokensAsync(cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<ProvisioningTokenInfo>(tokens.Select(t => ToInfo(t, now)).ToList()), AdminJsonContext.Default.ItemListProvisioningTokenInfo);
    }

    private static async Task<IResult> GetTokenAsync(string id, IRegistry registry, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var token = await registry.FindProvisioningTokenAsync(id, cancellationToken).ConfigureAwait(false);
        return token is null
            ? Problem(StatusCodes.Status404NotFound, "not found", $"no provisioning token '{id}'")
            : TypedResults.Json(ToInfo(token, timeProvider.GetUtcNow()), AdminJsonContext.Default.ProvisioningTokenInfo);
    }

    private static async Task<IResult> RevokeTokenAsync(string id, IRegistry registry, TimeProvider timeProvider, ILogger<ProvisioningTokenService> logger, CancellationToken cancellationToken)
    {
        var now = timeProvider.GetUtcNow();
        if (!await registry.RevokeProvisioningTokenAsync(id, now, cancellationToken).ConfigureAwait(false))
        {
            return Problem(StatusCodes.Status404NotFound, "not found", $"no provisioning token '{id}'");
        }

        Log.ProvisioningTokenRevoked(logger, id);
        var token = await registry.FindProvisioningTokenAsync(id, cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(ToInfo(token!, now), AdminJsonContext.Default.ProvisioningTokenInfo);
    }

    private static async Task<IResult> ListDevicesAsync(IRegistry registry, string? org, int? limit, CancellationToken cancellationToken)
    {
        var devices = await registry.ListDevicesAsync(org, Math.Clamp(limit ?? 1000, 1, 10_000), cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<DeviceInfo>(devices.Select(ToInfo).ToList()), AdminJsonContext.Default.ItemListDeviceInfo);
    }

    private static async Task<IResult> GetDeviceAsync(string id, IRegistry registry, CancellationToken cancellationToken)
    {
        var device = await registry.FindDeviceAsync(id, cancellationToken).ConfigureAwait(false);
        return device is null
            ? Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'")
            : TypedResults.Json(ToInfo(device), AdminJsonContext.Default.DeviceInfo);
    }

    private static async Task<IResult> RevokeDeviceAsync(string id, IRegistry registry, IServiceProvider services, TimeProvider timeProvider, ILogger<AdminKey> logger, CancellationToken cancellationToken)
    {
        var device = await registry.RevokeDeviceAsync(id, timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (device is null)
        {
            return Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'");
        }

        // Its tokens are refused from now on; a session it already has on the embedded broker ends now too.
        if (services.GetService(typeof(Broker.EmbeddedBroker)) is Broker.EmbeddedBroker broker)
        {
            await broker.DisconnectDeviceAsync(device.DeviceId, device.ClientId).ConfigureAwait(false);
        }

        Log.DeviceRevoked(logger, id);
        return TypedResults.Json(ToInfo(device), AdminJsonContext.Default.DeviceInfo);
    }

    /// <summary>Recent messages (the newest <c>limit</c>), or with <c>after</c> the ones stored since that sequence number.</summary>
    private static async Task<IResult> ListMessagesAsync(IRegistry registry, string? device, long? after, int? limit, CancellationToken cancellationToken)
    {
        var count = Math.Clamp(limit ?? 50, 1, 1000);
        var messages = after is { } since
            ? await registry.ListMessagesAsync(device, since, count, cancellationToken).ConfigureAwait(false)
            : await registry.RecentMessagesAsync(device, count, cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<MessageInfo>(messages.Select(ToInfo).ToList()), AdminJsonContext.Default.ItemListMessageInfo);
    }

    internal static MessageInfo ToInfo(StoredMessage stored)
    {
        var message = stored.Message;
        var text = System.Text.Unicode.Utf8.IsValid(message.Payload.Span) ? System.Text.Encoding.UTF8.GetString(message.Payload.Span) : null;
        return new MessageInfo
        {
            Seq = stored.Sequence,
            DeviceId = message.DeviceId,
            MessageId = message.MessageId,
            Stream = message.Stream,
            CreatedAt = message.CreatedAt,
            ReceivedAt = message.ReceivedAt,
            ContentType = message.ContentType,
            Properties = message.Properties.Count == 0 ? null : new Dictionary<string, string>(message.Properties),
            Payload = text,
            PayloadBase64 = text is null ? Convert.ToBase64String(message.Payload.Span) : null,
        };
    }

    private static readonly string[] OperationStatuses = ["pending", "approved", "rejected", "expired", "completed"];

    private static async Task<IResult> ListOperationsAsync(OperationService operations, string? status, int? limit, CancellationToken cancellationToken)
    {
        if (status is not null && status != "all" && !OperationStatuses.Contains(status))
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid status", $"status must be one of {string.Join(", ", OperationStatuses)} or all");
        }

        var list = await operations.ListAsync(status is "all" ? null : status, Math.Clamp(limit ?? 1000, 1, 10_000), cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<ProvisioningOperationInfo>(list.Select(ToInfo).ToList()), AdminJsonContext.Default.ItemListProvisioningOperationInfo);
    }

    private static async Task<IResult> GetOperationAsync(string id, OperationService operations, CancellationToken cancellationToken)
    {
        var operation = await operations.FindAsync(id, cancellationToken).ConfigureAwait(false);
        return operation is null
            ? Problem(StatusCodes.Status404NotFound, "not found", $"no provisioning operation '{id}'")
            : TypedResults.Json(ToInfo(operation), AdminJsonContext.Default.ProvisioningOperationInfo);
    }

    private static async Task<IResult> DecideAsync(string id, bool approve, OperationService operations, HttpRequest http, CancellationToken cancellationToken)
    {
        OperationDecisionRequest? body = null;
        if (http.ContentLength is > 0 || http.Headers.TransferEncoding.Count > 0)
        {
            try
            {
                body = await JsonSerializer.DeserializeAsync(http.Body, AdminJsonContext.Default.OperationDecisionRequest, cancellationToken).ConfigureAwait(false);
            }
            catch (JsonException ex)
            {
                return Problem(StatusCodes.Status400BadRequest, "invalid body", $"expected {{\"reason\": \"...\"}}: {ex.Message}");
            }
        }

        if (body?.Reason is { Length: > 1024 })
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid reason", "reason is longer than 1024 characters");
        }

        var outcome = await operations.DecideAsync(id, approve, body?.Reason, "operator", push: true, cancellationToken).ConfigureAwait(false);
        return outcome.Result switch
        {
            DecideOperationResult.Decided => TypedResults.Json(ToInfo(outcome.Operation!), AdminJsonContext.Default.ProvisioningOperationInfo),
            DecideOperationResult.NotFound => Problem(StatusCodes.Status404NotFound, "not found", $"no provisioning operation '{id}'"),
            DecideOperationResult.NotPending => Problem(StatusCodes.Status409Conflict, "not pending", $"operation '{id}' is already {outcome.Operation!.Status}"),
            DecideOperationResult.Expired => Problem(StatusCodes.Status409Conflict, "expired", $"operation '{id}' expired before it was decided"),
            DecideOperationResult.DeviceIdTaken => Problem(StatusCodes.Status409Conflict, "device id taken", $"the Device ID '{outcome.Operation!.DesiredDeviceId}' (or a device of client '{outcome.Operation.ClientId}') now exists; reject this operation"),
            DecideOperationResult.TokenUsedUp => Problem(StatusCodes.Status409Conflict, "token used up", $"provisioning token '{outcome.Operation!.ProvisioningTokenId}' has no uses left"),
            _ => Problem(StatusCodes.Status500InternalServerError, "unexpected", outcome.Result.ToString()),
        };
    }

    internal static ProvisioningOperationInfo ToInfo(OperationRecord record) => new()
    {
        OperationId = record.OperationId,
        Status = record.Status,
        OrgId = record.OrgId,
        ClientId = record.ClientId,
        ProvisioningTokenId = record.ProvisioningTokenId,
        DesiredDeviceId = record.DesiredDeviceId,
        ReprovisionOf = record.ReprovisionOf,
        DeviceId = record.DeviceId,
        DeviceName = record.DeviceName,
        Metadata = record.MetadataJson is null ? null : JsonSerializer.Deserialize(record.MetadataJson, RegistryJsonContext.Default.DictionaryStringJsonElement),
        Reason = record.Reason,
        DecidedBy = record.DecidedBy,
        CreatedAt = record.CreatedAt,
        ExpiresAt = record.ExpiresAt,
        DecidedAt = record.DecidedAt,
        CompletedAt = record.CompletedAt,
    };

    private static ItemList<ServerKeyInfo> KeyList(SigningKeyRing signing, EncryptionKeyRing encryption)
    {
        var sig = signing.All;
        var enc = encryption.All;
        return new ItemList<ServerKeyInfo>(
        [
            .. sig.Select((k, i) => new ServerKeyInfo { Kid = k.KeyId, Use = "sig", Current = i == sig.Count - 1, CreatedAt = k.CreatedAt }).Reverse(),
            .. enc.Select((k, i) => new ServerKeyInfo { Kid = k.KeyId, Use = "enc", Current = i == enc.Count - 1, CreatedAt = k.CreatedAt }).Reverse(),
        ]);
    }

    internal static IResult Problem(int status, string title, string detail) =>
        TypedResults.Json(new ApiProblem { Title = title, Status = status, Detail = detail }, AdminJsonContext.Default.ApiProblem, "application/problem+json", status);

    internal static ProvisioningTokenInfo ToInfo(ProvisioningTokenRecord record, DateTimeOffset now) => new()
    {
        Id = record.Id,
        OrgId = record.OrgId,
        Description = record.Description,
        AutoApprove = record.AutoApprove,
        MaxUses = record.MaxUses,
        Uses = record.Uses,
        ExpiresAt = record.ExpiresAt,
        CreatedAt = record.CreatedAt,
        RevokedAt = record.RevokedAt,
        Status = record.RevokedAt is not null ? "revoked"
            : record.ExpiresAt is { } e && e <= now ? "expired"
            : record.MaxUses is { } m && record.Uses >= m ? "used_up"
            : "active",
    };

    internal static DeviceInfo ToInfo(DeviceRecord record) => new()
    {
        DeviceId = record.DeviceId,
        OrgId = record.OrgId,
        ClientId = record.ClientId,
        DeviceName = record.Name,
        Status = record.Status,
        Metadata = record.MetadataJson is null ? null : JsonSerializer.Deserialize(record.MetadataJson, RegistryJsonContext.Default.DictionaryStringJsonElement),
        ProvisioningTokenId = record.ProvisioningTokenId,
        CreatedAt = record.CreatedAt,
        LastRegisteredAt = record.LastRegisteredAt,
        RevokedAt = record.RevokedAt,
    };

    /// <summary>Requires the admin key as <c>Authorization: Bearer ...</c> (or <c>X-Enroll-Admin-Key</c>).</summary>
    private sealed class AdminKeyFilter(AdminKey key, ILogger<AdminKey> logger) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var headers = context.HttpContext.Request.Headers;
            var presented = headers.Authorization.ToString() is { } auth && auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
                ? auth["Bearer ".Length..].Trim()
                : headers["X-Enroll-Admin-Key"].ToString();
            if (!key.Matches(presented))
            {
                Log.AdminUnauthorized(logger, context.HttpContext.Request.Path, context.HttpContext.Connection.RemoteIpAddress?.ToString() ?? "?");
                context.HttpContext.Response.Headers.WWWAuthenticate = "Bearer";
                return Problem(StatusCodes.Status401Unauthorized, "unauthorized", $"send the admin key (see {key.Path}) as 'Authorization: Bearer <key>'");
            }

            return await next(context).ConfigureAwait(false);
        }
    }
}
