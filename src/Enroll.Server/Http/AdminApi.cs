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
        app.MapGet("/.well-known/jwks.json", (PublishedKeys keys) => TypedResults.Json(keys.KeySet, AdminJsonContext.Default.ServerKeySet));

        // The admin key, the body limit and the failure limit are checked by AdminGate before anything here runs.
        var api = app.MapGroup("/api");
        api.MapPost("/tokens", CreateTokenAsync);
        api.MapGet("/tokens", ListTokensAsync);
        api.MapGet("/tokens/{id}", GetTokenAsync);
        api.MapPost("/tokens/{id}/revoke", RevokeTokenAsync);
        api.MapGet("/devices", ListDevicesAsync);
        api.MapGet("/devices/{id}", GetDeviceAsync);
        api.MapPost("/devices/{id}/revoke", RevokeDeviceAsync);
        api.MapCommandApi();
        api.MapGet("/keys", (SigningKeyRing signing, EncryptionKeyRing encryption) => TypedResults.Json(KeyList(signing, encryption), AdminJsonContext.Default.ItemListServerKeyInfo));
        api.MapPost("/keys/rotate", async (PublishedKeys keys, SigningKeyRing signing, EncryptionKeyRing encryption, ILogger<SigningKeyRing> logger, CancellationToken cancellationToken) =>
        {
            var (signingKey, encryptionKey, pruned) = await keys.RotateAsync(cancellationToken).ConfigureAwait(false);
            Log.KeysRotated(logger, signingKey, encryptionKey, pruned);
            return TypedResults.Json(KeyList(signing, encryption), AdminJsonContext.Default.ItemListServerKeyInfo);
        });
        api.MapGet("/messages", ListMessagesAsync);
        api.MapFileApi();
        api.MapTwinApi();
        api.MapGet("/provisioning-operations", ListOperationsAsync);
        api.MapGet("/provisioning-operations/{id}", GetOperationAsync);
        api.MapPost("/provisioning-operations/{id}/approve", (string id, OperationService operations, HttpRequest http, CancellationToken ct) => DecideAsync(id, true, operations, http, ct));
        api.MapPost("/provisioning-operations/{id}/reject", (string id, OperationService operations, HttpRequest http, CancellationToken ct) => DecideAsync(id, false, operations, http, ct));
    }

    /// <summary>The most items one page of a list holds; a larger <c>limit</c> is refused with 400 saying so.</summary>
    public const int MaxPageSize = 1000;

    /// <summary>
    /// The admin API's JSON as its bodies are read: a field the server does not know is refused (as over MQTT), so that a
    /// misspelt option is an error rather than silently ignored.
    /// </summary>
    private static readonly AdminJsonContext StrictJson = new(new JsonSerializerOptions(AdminJsonContext.Default.Options)
    {
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    });

    private static async Task<IResult> CreateTokenAsync(
        HttpRequest http,
        ProvisioningTokenService tokens,
        TimeProvider timeProvider,
        ILogger<ProvisioningTokenService> logger,
        CancellationToken cancellationToken)
    {
        CreateProvisioningTokenRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Body, StrictJson.CreateProvisioningTokenRequest, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid body", BodyProblem(ex, "org_id, auto_approve, expires_at, max_uses, description, registration_token_lifetime_seconds"));
        }

        if (request is null)
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid body", "expected a JSON object with org_id");
        }

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

        var minLifetime = (long)EnrollServerOptionsValidation.MinRegistrationTokenLifetime.TotalSeconds;
        var maxLifetime = (long)EnrollServerOptionsValidation.MaxRegistrationTokenLifetime.TotalSeconds;
        if (request.RegistrationTokenLifetimeSeconds is { } lifetime && (lifetime < minLifetime || lifetime > maxLifetime))
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid registration_token_lifetime_seconds", $"registration_token_lifetime_seconds must be {minLifetime} (1 hour) to {maxLifetime} (3650 days)");
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

    private static async Task<IResult> ListTokensAsync(IProvisioningTokenStore registry, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var now = timeProvider.GetUtcNow();
        var tokens = await registry.ListProvisioningTokensAsync(cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<ProvisioningTokenInfo>(tokens.Select(t => ToInfo(t, now)).ToList()), AdminJsonContext.Default.ItemListProvisioningTokenInfo);
    }

    private static async Task<IResult> GetTokenAsync(string id, IProvisioningTokenStore registry, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var token = await registry.FindProvisioningTokenAsync(id, cancellationToken).ConfigureAwait(false);
        return token is null
            ? Problem(StatusCodes.Status404NotFound, "not found", $"no provisioning token '{id}'")
            : TypedResults.Json(ToInfo(token, timeProvider.GetUtcNow()), AdminJsonContext.Default.ProvisioningTokenInfo);
    }

    private static async Task<IResult> RevokeTokenAsync(string id, IProvisioningTokenStore registry, TimeProvider timeProvider, ILogger<ProvisioningTokenService> logger, CancellationToken cancellationToken)
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

    /// <summary>
    /// Devices in the order they were created, a page of <c>limit</c> (at most <see cref="MaxPageSize"/>, the default) at
    /// a time; a full page carries <c>Link: &lt;/api/devices?after=...&gt;; rel="next"</c>, the request for the next one.
    /// </summary>
    private static async Task<IResult> ListDevicesAsync(IDeviceStore registry, HttpContext http, string? org, string? limit, string? after, CancellationToken cancellationToken)
    {
        if (!TryPageSize(limit, MaxPageSize, out var count, out var problem))
        {
            return problem;
        }

        var devices = await registry.ListDevicesAsync(org, count, after, cancellationToken).ConfigureAwait(false);
        if (devices.Count == count)
        {
            http.Response.Headers.Link = $"</api/devices?{Query(("org", org), ("limit", limit), ("after", devices[^1].DeviceId))}>; rel=\"next\"";
        }

        return TypedResults.Json(new ItemList<DeviceInfo>(devices.Select(ToInfo).ToList()), AdminJsonContext.Default.ItemListDeviceInfo);
    }

    private static bool TryPageSize(string? text, int defaultSize, out int size, out IResult problem)
    {
        problem = null!;
        size = defaultSize;
        if (text is null)
        {
            return true;
        }

        if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out size) && size is >= 1 and <= MaxPageSize)
        {
            return true;
        }

        problem = Problem(StatusCodes.Status400BadRequest, "invalid limit", $"limit must be 1 to {MaxPageSize} (the largest page); follow the Link header's rel=\"next\" for more");
        return false;
    }

    private static string Query(params (string Name, string? Value)[] parameters) =>
        string.Join('&', parameters.Where(p => p.Value is not null).Select(p => $"{p.Name}={Uri.EscapeDataString(p.Value!)}"));

    private static string BodyProblem(JsonException ex, string fields) =>
        ex.Message.Contains("could not be mapped", StringComparison.Ordinal)
            ? $"unknown field {ex.Path?.TrimStart('$', '.')} (the fields are {fields})"
            : $"the body is not valid JSON of the expected shape at {ex.Path ?? "$"} ({fields})";

    private static async Task<IResult> GetDeviceAsync(string id, IDeviceStore registry, CancellationToken cancellationToken)
    {
        var device = await registry.FindDeviceAsync(id, cancellationToken).ConfigureAwait(false);
        return device is null
            ? Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'")
            : TypedResults.Json(ToInfo(device), AdminJsonContext.Default.DeviceInfo);
    }

    private static async Task<IResult> RevokeDeviceAsync(string id, IDeviceStore registry, Broker.IDeviceSessions sessions, TimeProvider timeProvider, ILogger<AdminKey> logger, ConsoleFeed feed, CancellationToken cancellationToken)
    {
        var device = await registry.RevokeDeviceAsync(id, timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (device is null)
        {
            return Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'");
        }

        await feed.AnnounceAsync(ConsoleFeed.Devices, device.DeviceId).ConfigureAwait(false);

        // Its tokens are refused from now on; a session it already has on the broker ends now too, where the transport can
        // end one (an external broker cannot be asked to: the answer says so).
        var disconnect = await sessions.DisconnectAsync(device.DeviceId, device.ClientId, cancellationToken).ConfigureAwait(false);
        Log.DeviceRevoked(logger, id);
        return TypedResults.Json(ToInfo(device) with { Disconnect = Broker.DisconnectResults.WireName(disconnect) }, AdminJsonContext.Default.DeviceInfo);
    }

    /// <summary>
    /// Recent messages (the newest <c>limit</c>, oldest first; with <c>before</c> the newest older than that sequence
    /// number), or with <c>after</c> the ones stored since that sequence number. <c>limit</c> is 1 to
    /// <see cref="MaxPageSize"/> (50 when absent). A full page carries a <c>Link</c> header: rel="next" (after its last
    /// message) for <c>after</c> pages, rel="prev" (before its first) for recent ones.
    /// </summary>
    private static async Task<IResult> ListMessagesAsync(IMessageStore registry, HttpContext http, string? device, string? after, string? before, string? limit, CancellationToken cancellationToken)
    {
        if (!TryPageSize(limit, 50, out var count, out var problem))
        {
            return problem;
        }

        long? since = null, until = null;
        if (after is not null)
        {
            if (!long.TryParse(after, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value))
            {
                return Problem(StatusCodes.Status400BadRequest, "invalid after", "after must be a message sequence number (seq)");
            }

            since = value;
        }

        if (before is not null)
        {
            if (since is not null || !long.TryParse(before, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value))
            {
                return Problem(StatusCodes.Status400BadRequest, "invalid before", "before must be a message sequence number (seq), and not given with after");
            }

            until = value;
        }

        var messages = since is { } from
            ? await registry.ListMessagesAsync(device, from, count, cancellationToken).ConfigureAwait(false)
            : await registry.RecentMessagesAsync(device, count, until, cancellationToken).ConfigureAwait(false);
        if (messages.Count == count)
        {
            var limitText = count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            http.Response.Headers.Link = since is not null
                ? $"</api/messages?{Query(("device", device), ("limit", limitText), ("after", messages[^1].Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture)))}>; rel=\"next\""
                : $"</api/messages?{Query(("device", device), ("limit", limitText), ("before", messages[0].Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture)))}>; rel=\"prev\"";
        }

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

    private static async Task<IResult> ListOperationsAsync(OperationService operations, HttpRequest http, string? status, int? limit, CancellationToken cancellationToken)
    {
        if (status is not null && status != "all" && !OperationStatuses.Contains(status))
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid status", $"status must be one of {string.Join(", ", OperationStatuses)} or all");
        }

        var filter = OperationFilters.FromQuery(http.Query);
        var count = Math.Clamp(limit ?? 1000, 1, 10_000);
        var filtered = filter.OrgId is not null || filter.ProvisioningTokenId is not null || filter.Metadata is not null;
        var list = await operations.ListAsync(status is "all" ? null : status, filtered ? OperationFilters.MaxScanned : count, cancellationToken).ConfigureAwait(false);
        if (filtered)
        {
            list = list.Where(o => OperationFilters.Matches(o, filter)).Take(count).ToList();
        }

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
                body = await JsonSerializer.DeserializeAsync(http.Body, StrictJson.OperationDecisionRequest, cancellationToken).ConfigureAwait(false);
            }
            catch (JsonException ex)
            {
                return Problem(StatusCodes.Status400BadRequest, "invalid body", $"expected {{\"reason\": \"...\"}}: {BodyProblem(ex, "reason")}");
            }
        }

        if (body?.Reason is { Length: > 1024 })
        {
            return Problem(StatusCodes.Status400BadRequest, "invalid reason", "reason is longer than 1024 characters");
        }

        if (body?.Reason is { Length: > 0 } reason)
        {
            AuditDetail.Set(http.HttpContext, "reason: " + reason);
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
}
