using System.Text.Json.Serialization;

namespace Enroll.Protocol.Admin;

// Issue 15, operators: the bodies of /api/session, /api/operators and /api/audit.

/// <summary><c>POST /api/session</c>: sign in with the admin key or an operator's key.</summary>
public sealed record SignInRequest
{
    /// <summary>The admin key, or the key <c>enroll operators add</c> printed.</summary>
    public required string Key { get; init; }
}

/// <summary>The signed-in session (<c>POST</c> and <c>GET /api/session</c>); the cookie itself is HttpOnly.</summary>
public sealed record SessionInfo
{
    /// <summary>Who signed in: <c>admin</c> or the operator's name.</summary>
    public required string Operator { get; init; }

    /// <summary>True when signed in with the admin key.</summary>
    public bool IsAdmin { get; init; }

    /// <summary>Sent back in the <c>X-Enroll-CSRF</c> header of every state-changing request made with the session cookie.</summary>
    public required string CsrfToken { get; init; }

    /// <summary>When the session ends (UTC).</summary>
    public DateTimeOffset ExpiresAt { get; init; }
}

/// <summary>An operator account (<c>GET /api/operators</c>); its key is never shown again after creation.</summary>
public sealed record OperatorInfo
{
    public required string Name { get; init; }

    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Who created it (<c>admin</c>, or an operator's name).</summary>
    public string? CreatedBy { get; init; }

    /// <summary>When it was removed; a removed operator's key and sessions no longer work.</summary>
    public DateTimeOffset? RemovedAt { get; init; }
}

/// <summary><c>POST /api/operators</c>.</summary>
public sealed record CreateOperatorRequest
{
    public required string Name { get; init; }
}

/// <summary>The answer to <c>POST /api/operators</c>: the account and its key, shown this once.</summary>
public sealed record CreatedOperator
{
    public required OperatorInfo Operator { get; init; }

    public required string Key { get; init; }
}

/// <summary>One entry of the audit log (<c>GET /api/audit</c>).</summary>
public sealed record AuditEntry
{
    public long Id { get; init; }

    public DateTimeOffset At { get; init; }

    /// <summary>Who: <c>admin</c>, an operator's name, or <c>-</c> for a failed sign-in.</summary>
    public required string Operator { get; init; }

    /// <summary>What, as a stable name: <c>token.create</c>, <c>operation.approve</c>, <c>device.revoke</c>, <c>session.sign_in</c>, ...</summary>
    public required string Action { get; init; }

    /// <summary>What it was done to (a token, operation, device or command ID, a filter), if anything.</summary>
    public string? Target { get; init; }

    /// <summary>From where: the remote address.</summary>
    public string? Remote { get; init; }

    /// <summary>The HTTP status of the answer.</summary>
    public int Status { get; init; }

    /// <summary>A short description (the reason of a rejection, how many a bulk decision matched).</summary>
    public string? Detail { get; init; }
}

/// <summary>JSON of the operator, session and audit bodies (snake_case, like <see cref="AdminJsonContext"/>).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SignInRequest))]
[JsonSerializable(typeof(SessionInfo))]
[JsonSerializable(typeof(OperatorInfo))]
[JsonSerializable(typeof(ItemList<OperatorInfo>))]
[JsonSerializable(typeof(CreateOperatorRequest))]
[JsonSerializable(typeof(CreatedOperator))]
[JsonSerializable(typeof(AuditEntry))]
[JsonSerializable(typeof(ItemList<AuditEntry>))]
public sealed partial class OperatorJsonContext : JsonSerializerContext;
