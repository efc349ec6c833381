using Microsoft.AspNetCore.Http;

namespace Enroll.Server.Http.Operators;

/// <summary>
/// What an endpoint tells the audit log about its request beyond the route: a short detail (a rejection's reason, how
/// many a bulk decision covered), a target the route does not name, or a more precise action name.
/// </summary>
internal static class AuditDetail
{
    public const string DetailKey = "enroll.audit.detail";

    public const string TargetKey = "enroll.audit.target";

    public const string ActionKey = "enroll.audit.action";

    /// <summary>Sets the detail the audit entry of <paramref name="context"/>'s request records.</summary>
    public static void Set(HttpContext context, string detail) => context.Items[DetailKey] = detail;

    /// <summary>Sets the target (when the route has no ID of it, such as a created token's ID).</summary>
    public static void SetTarget(HttpContext context, string target) => context.Items[TargetKey] = target;

    /// <summary>Overrides the action name derived from the route (e.g. <c>operation.bulk_approve</c> for <c>POST /api/provisioning-operations/bulk</c>).</summary>
    public static void SetAction(HttpContext context, string action) => context.Items[ActionKey] = action;

    public static string? Get(HttpContext context, string key) => context.Items.TryGetValue(key, out var value) ? value as string : null;
}
