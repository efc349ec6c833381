using System.Collections.Frozen;
using Enroll.Protocol.Admin;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Http.Operators;

/// <summary>
/// Writes one audit entry per state-changing <c>/api</c> request once it is answered: who (the gate's
/// <see cref="OperatorIdentity"/>), from where, the status, and an action name from the endpoint's route pattern
/// (<see cref="Actions"/>; a route not in the table is recorded as <c>METHOD /pattern</c>, so nothing goes unrecorded). A
/// failed write never fails the request: it is logged, once per interval.
/// </summary>
internal sealed partial class AuditRecorder(IAuditStore store, TimeProvider timeProvider, ILogger<AuditRecorder> logger)
{
    /// <summary>Operator of an entry nobody could be identified for (a failed sign-in).</summary>
    public const string Nobody = "-";

    /// <summary>"METHOD pattern" → action.</summary>
    public static readonly FrozenDictionary<string, string> Actions = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["POST /api/tokens"] = "token.create",
        ["POST /api/tokens/{id}/revoke"] = "token.revoke",
        ["POST /api/provisioning-operations/{id}/approve"] = "operation.approve",
        ["POST /api/provisioning-operations/{id}/reject"] = "operation.reject",
        ["POST /api/provisioning-operations/bulk"] = "operation.bulk",
        ["POST /api/devices/{id}/revoke"] = "device.revoke",
        ["PATCH /api/devices/{id}/twin/desired"] = "twin.desired",
        ["PATCH /api/twins/desired"] = "twin.fleet_desired",
        ["POST /api/devices/{id}/commands"] = "command.send",
        ["POST /api/commands/{id}/cancel"] = "command.cancel",
        ["POST /api/commands/rollouts"] = "command.rollout",
        ["DELETE /api/files/{id}"] = "file.delete",
        ["POST /api/keys/rotate"] = "key.rotate",
        ["POST /api/operators"] = "operator.add",
        ["DELETE /api/operators/{name}"] = "operator.remove",
        ["POST /api/session"] = "session.sign_in",
        ["DELETE /api/session"] = "session.sign_out",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    private readonly RepeatedCondition _failed = new(timeProvider, RepeatedCondition.DefaultInterval);

    /// <summary>True for the methods the log records (everything but GET, HEAD and OPTIONS).</summary>
    public static bool Records(string method) => !HttpMethods.IsGet(method) && !HttpMethods.IsHead(method) && !HttpMethods.IsOptions(method);

    /// <summary>The action and target of <paramref name="context"/>'s request, from its endpoint's route pattern.</summary>
    public static (string Action, string? Target) Describe(HttpContext context)
    {
        var method = context.Request.Method;
        if (context.GetEndpoint() is not RouteEndpoint { RoutePattern: var pattern })
        {
            return (method + " " + context.Request.Path, null);
        }

        var text = "/" + (pattern.RawText ?? string.Empty).TrimStart('/');
        var action = Actions.TryGetValue(method + " " + text, out var known) ? known : method + " " + text;
        string? target = null;
        foreach (var parameter in pattern.Parameters)
        {
            if (context.Request.RouteValues.TryGetValue(parameter.Name, out var value) && value is not null)
            {
                target = target is null ? value.ToString() : target + " " + value;
            }
        }

        if (action == "session.sign_in" && context.Response.StatusCode != StatusCodes.Status200OK)
        {
            action = "session.sign_in_failed";
        }

        return (AuditDetail.Get(context, AuditDetail.ActionKey) ?? action, AuditDetail.Get(context, AuditDetail.TargetKey) ?? target);
    }

    /// <summary>Records <paramref name="context"/>'s answered request.</summary>
    public async Task RecordAsync(HttpContext context)
    {
        var (action, target) = Describe(context);
        var entry = new AuditEntry
        {
            At = timeProvider.GetUtcNow(),
            Operator = OperatorIdentity.Of(context)?.Name ?? Nobody,
            Action = action,
            Target = Truncate(target, 512),
            Remote = context.Connection.RemoteIpAddress?.ToString(),
            Status = context.Response.StatusCode,
            Detail = Truncate(AuditDetail.Get(context, AuditDetail.DetailKey), 1024),
        };
        try
        {
            await store.AppendAuditAsync(entry, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            if (_failed.Occurred(out var count))
            {
                LogAuditFailed(logger, count, entry.Action, entry.Operator, ex);
            }
        }
    }

    private static string? Truncate(string? value, int max) => value is { Length: var n } && n > max ? value[..max] : value;

    [LoggerMessage(EventId = 2000, Level = LogLevel.Error, Message = "Audit log: {Count} entr(ies) could not be written (latest: {Action} by {Operator}); the actions themselves were done")]
    private static partial void LogAuditFailed(ILogger logger, long count, string action, string @operator, Exception exception);
}
