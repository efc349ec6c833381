using Microsoft.AspNetCore.Http;

namespace Enroll.Server.Http;

/// <summary>
/// Who is making an <c>/api</c> request, as the admin gate established it: the admin (the admin key), or a named operator
/// (its own credential), directly or through a console session. The audit log records <see cref="Name"/>.
/// </summary>
/// <param name="Name">The operator's name; <c>admin</c> for the admin key.</param>
/// <param name="IsAdmin">True for the admin key (and sessions signed in with it).</param>
/// <param name="SessionId">The console session the request came through, or null for a credential in the request.</param>
internal sealed record OperatorIdentity(string Name, bool IsAdmin, string? SessionId = null)
{
    public const string AdminName = "admin";

    private static readonly object Key = new();

    /// <summary>The admin, by the admin key in the request.</summary>
    public static OperatorIdentity Admin { get; } = new(AdminName, IsAdmin: true);

    /// <summary>The identity the gate set on <paramref name="context"/>, or null outside <c>/api</c>.</summary>
    public static OperatorIdentity? Of(HttpContext context) => context.Items.TryGetValue(Key, out var value) ? value as OperatorIdentity : null;

    /// <summary>Sets the identity of <paramref name="context"/>'s request (done by the gate only).</summary>
    public void Set(HttpContext context) => context.Items[Key] = this;
}
