using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using Enroll.Server.Commands;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Enroll.Server.Http;

/// <summary>
/// The commands part of the admin API (SPEC §2.6; docs/commands.md): send a command to a device (optionally waiting for
/// its result), read one, list a device's or all, cancel. Behind the admin key like every <c>/api</c> route, with the
/// same problem bodies; every limit refusal names the limit (<see cref="CommandLimits"/>).
/// </summary>
internal static class CommandApi
{
    /// <summary>Default and largest page of a command list.</summary>
    public const int DefaultPageSize = 100;

    private static readonly CommandJsonContext StrictJson = new(new JsonSerializerOptions(CommandJsonContext.Default.Options)
    {
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    });

    private const string SendFields = "name, payload, ttl";

    public static void MapCommandApi(this IEndpointRouteBuilder api)
    {
        api.MapPost("/devices/{id}/commands", SendAsync);
        api.MapGet("/devices/{id}/commands", ListDeviceCommandsAsync);
        api.MapGet("/commands", ListCommandsAsync);
        api.MapPost("/commands/rollouts", CreateRolloutAsync);
        api.MapGet("/commands/rollouts/{id}", GetRolloutAsync);
        api.MapGet("/commands/{id}", GetAsync);
        api.MapPost("/commands/{id}/cancel", CancelAsync);
    }

    private static async Task<IResult> SendAsync(string id, string? wait, HttpRequest http, CommandService commands, CommandWaiters waiters, CancellationToken cancellationToken)
    {
        SendCommandRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Body, StrictJson.SendCommandRequest, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", BodyProblem(ex, SendFields));
        }

        if (request is null)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", "expected a JSON object with name (and payload, ttl)");
        }

        if (CommandLimits.CheckName(request.Name) is { } nameProblem)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid name", nameProblem);
        }

        var payload = request.Payload?.ToJsonString();
        if (CommandLimits.CheckPayloadText(payload) is { } payloadProblem)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "payload too large", payloadProblem);
        }

        if (!TryTtl(request.Ttl, out var ttl, out var ttlProblem))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid ttl", ttlProblem);
        }

        var waitFor = TimeSpan.Zero;
        if (wait is not null && (!CommandLimits.TryParseDuration(wait, out waitFor) || waitFor < TimeSpan.Zero || waitFor > CommandLimits.MaxWait))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid wait", "wait must be a duration like 30s or 2m, or seconds, at most 5m (the limit)");
        }

        var outcome = await commands.SendAsync(id, request.Name!, payload, ttl, null, cancellationToken).ConfigureAwait(false);
        switch (outcome.Result)
        {
            case SendCommandResult.NoDevice:
                return AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'");
            case SendCommandResult.Revoked:
                return AdminApi.Problem(StatusCodes.Status409Conflict, "device revoked", $"device '{id}' is revoked and takes no commands");
            case SendCommandResult.TooMany:
                return AdminApi.Problem(StatusCodes.Status409Conflict, "too many commands", CommandLimits.TooManyMessage(id));
        }

        var command = outcome.Command!;
        if (waitFor > TimeSpan.Zero && !command.IsFinal)
        {
            command = await waiters.WaitAsync(command.CommandId, waitFor, cancellationToken, known: command).ConfigureAwait(false) ?? command;
        }

        http.HttpContext.Response.Headers.Location = $"/api/commands/{command.CommandId}";
        return TypedResults.Json(ToInfo(command), CommandJsonContext.Default.CommandInfo, statusCode: command.IsFinal ? StatusCodes.Status200OK : StatusCodes.Status202Accepted);
    }

    /// <summary>Most devices a minute a rollout may go at.</summary>
    public const int MaxRatePerMinute = 10_000;

    private static async Task<IResult> CreateRolloutAsync(HttpRequest http, ICommandRolloutStore rollouts, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        CreateRolloutRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Body, StrictJson.CreateRolloutRequest, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", BodyProblem(ex, "org, where, name, payload, ttl, rate_per_minute"));
        }

        if (request is null || !Enroll.Protocol.EnrollIdentifiers.IsValid(request.Org))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid org", $"org is required and must be {Enroll.Protocol.EnrollIdentifiers.Rule}");
        }

        var where = request.Where ?? [];
        if (where.Keys.Select(RolloutFilter.Check).FirstOrDefault(p => p is not null) is { } whereProblem)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid where", whereProblem);
        }

        if (CommandLimits.CheckName(request.Name) is { } nameProblem)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid name", nameProblem);
        }

        var payload = request.Payload?.ToJsonString();
        if (CommandLimits.CheckPayloadText(payload) is { } payloadProblem)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "payload too large", payloadProblem);
        }

        if (!TryTtl(request.Ttl, out var ttl, out var ttlProblem))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid ttl", ttlProblem);
        }

        if (request.RatePerMinute is < 1 or > MaxRatePerMinute)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid rate_per_minute", $"rate_per_minute must be 1 to {MaxRatePerMinute:N0} devices a minute (the limit)");
        }

        var rollout = new RolloutRecord(RolloutRecord.NewId(), request.Org!, RolloutFilter.Json(where), request.Name!, payload, ttl, request.RatePerMinute ?? 60, timeProvider.GetUtcNow());
        var stored = await rollouts.CreateRolloutAsync(rollout, where, cancellationToken).ConfigureAwait(false);
        var progress = await rollouts.GetRolloutAsync(stored.RolloutId, cancellationToken).ConfigureAwait(false);
        http.HttpContext.Response.Headers.Location = $"/api/commands/rollouts/{stored.RolloutId}";
        return TypedResults.Json(ToInfo(progress!), CommandJsonContext.Default.RolloutInfo, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> GetRolloutAsync(string id, ICommandRolloutStore rollouts, CancellationToken cancellationToken) =>
        await rollouts.GetRolloutAsync(id, cancellationToken).ConfigureAwait(false) is { } progress
            ? TypedResults.Json(ToInfo(progress), CommandJsonContext.Default.RolloutInfo)
            : AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no rollout '{id}'");

    internal static RolloutInfo ToInfo(RolloutProgress progress) => new()
    {
        RolloutId = progress.Rollout.RolloutId,
        Org = progress.Rollout.OrgId,
        Where = JsonSerializer.Deserialize(progress.Rollout.Filter, RegistryJsonContext.Default.DictionaryStringString),
        Name = progress.Rollout.Name,
        Payload = progress.Rollout.Payload is null ? null : JsonNode.Parse(progress.Rollout.Payload),
        RatePerMinute = progress.Rollout.RatePerMinute,
        CreatedAt = progress.Rollout.CreatedAt,
        Total = progress.Rollout.Total,
        Waiting = progress.Waiting,
        Refused = progress.Refused,
        States = new Dictionary<string, int>(progress.Commands, StringComparer.Ordinal),
        Done = progress.IsDone,
    };

    private static async Task<IResult> GetAsync(string id, ICommandStore commands, CancellationToken cancellationToken) =>
        await commands.GetCommandAsync(id, cancellationToken).ConfigureAwait(false) is { } command
            ? TypedResults.Json(ToInfo(command), CommandJsonContext.Default.CommandInfo)
            : AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no command '{id}'");

    private static async Task<IResult> CancelAsync(string id, CommandService commands, CancellationToken cancellationToken)
    {
        var outcome = await commands.CancelAsync(id, cancellationToken).ConfigureAwait(false);
        return outcome.Result switch
        {
            CommandResultOutcome.Changed => TypedResults.Json(ToInfo(outcome.Command!), CommandJsonContext.Default.CommandInfo),
            CommandResultOutcome.AlreadyFinished => AdminApi.Problem(StatusCodes.Status409Conflict, "already finished", $"command '{id}' is already {outcome.Command!.State}; only a queued or sent command can be canceled"),
            _ => AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no command '{id}'"),
        };
    }

    private static async Task<IResult> ListDeviceCommandsAsync(string id, string? state, string? limit, string? after, HttpContext http, ICommandStore commands, IDeviceStore devices, CancellationToken cancellationToken) =>
        await devices.FindDeviceAsync(id, cancellationToken).ConfigureAwait(false) is null
            ? AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no device '{id}'")
            : await ListAsync($"/api/devices/{Uri.EscapeDataString(id)}/commands", id, null, state, limit, after, http, commands, cancellationToken).ConfigureAwait(false);

    private static Task<IResult> ListCommandsAsync(string? device, string? state, string? limit, string? after, HttpContext http, ICommandStore commands, CancellationToken cancellationToken) =>
        ListAsync("/api/commands", device, device, state, limit, after, http, commands, cancellationToken);

    /// <summary>A page of commands in the order they were queued; a full page carries <c>Link: &lt;...after=&gt;; rel="next"</c>.</summary>
    private static async Task<IResult> ListAsync(string path, string? deviceId, string? deviceParameter, string? state, string? limit, string? after, HttpContext http, ICommandStore commands, CancellationToken cancellationToken)
    {
        if (state is not null && !CommandStatuses.All.Contains(state))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid state", $"state must be one of {string.Join(", ", CommandStatuses.All)}");
        }

        var count = DefaultPageSize;
        if (limit is not null && (!int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out count) || count is < 1 or > AdminApi.MaxPageSize))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid limit", $"limit must be 1 to {AdminApi.MaxPageSize} (the largest page); follow the Link header's rel=\"next\" for more");
        }

        var page = await commands.ListCommandsAsync(deviceId, state, count, after, cancellationToken).ConfigureAwait(false);
        if (page.Count == count)
        {
            var query = string.Join('&', new[] { ("device", deviceParameter), ("state", state), ("limit", limit), ("after", page[^1].CommandId) }
                .Where(p => p.Item2 is not null)
                .Select(p => $"{p.Item1}={Uri.EscapeDataString(p.Item2!)}"));
            http.Response.Headers.Link = $"<{path}?{query}>; rel=\"next\"";
        }

        return TypedResults.Json(new ItemList<CommandInfo>([.. page.Select(ToInfo)]), CommandJsonContext.Default.ItemListCommandInfo);
    }

    /// <summary>A time to live from the body: absent → <see cref="CommandLimits.DefaultTtl"/>; a number of seconds or a duration string, within the limits.</summary>
    internal static bool TryTtl(JsonElement? given, out TimeSpan ttl, out string problem)
    {
        problem = string.Empty;
        ttl = CommandLimits.DefaultTtl;
        var parsed = given switch
        {
            null or { ValueKind: JsonValueKind.Null } => true,
            { ValueKind: JsonValueKind.Number } number when number.TryGetDouble(out var seconds) && seconds is >= 0 and < 1e9 => Set(TimeSpan.FromSeconds(seconds), out ttl),
            { ValueKind: JsonValueKind.String } text => CommandLimits.TryParseDuration(text.GetString(), out ttl),
            _ => false,
        };
        if (!parsed)
        {
            problem = "ttl must be a duration like \"30s\", \"15m\", \"1h\", \"7d\" or a number of seconds, 1s to 7d (the limits)";
            return false;
        }

        if (CommandLimits.CheckTtl(ttl) is { } range)
        {
            problem = range;
            return false;
        }

        return true;
    }

    private static bool Set(TimeSpan value, out TimeSpan target)
    {
        target = value;
        return true;
    }

    private static string BodyProblem(JsonException ex, string fields) =>
        ex.Message.Contains("could not be mapped", StringComparison.Ordinal)
            ? $"unknown field {ex.Path?.TrimStart('$', '.')} (the fields are {fields})"
            : $"the body is not valid JSON of the expected shape at {ex.Path ?? "$"} ({fields})";

    internal static CommandInfo ToInfo(CommandRecord command) => new()
    {
        CommandId = command.CommandId,
        DeviceId = command.DeviceId,
        Name = command.Name,
        Payload = command.Payload is null ? null : JsonNode.Parse(command.Payload),
        State = command.State,
        CreatedAt = command.CreatedAt,
        ExpiresAt = command.ExpiresAt,
        SentAt = command.SentAt,
        FinishedAt = command.FinishedAt,
        Result = command.ResultPayload is null ? null : JsonNode.Parse(command.ResultPayload),
        Message = command.ResultMessage,
        RolloutId = command.RolloutId,
    };
}
