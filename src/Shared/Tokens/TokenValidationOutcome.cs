namespace Enroll.Shared.Tokens;

/// <summary>The result of validating one token: its claims when valid, a short reason when not.</summary>
internal sealed record TokenValidationOutcome
{
    public bool IsValid { get; init; }

    public string? Subject { get; init; }

    public string? TokenId { get; init; }

    public string? KeyId { get; init; }

    public DateTimeOffset IssuedAt { get; init; }

    public DateTimeOffset ExpiresAt { get; init; }

    /// <summary>Claims other than the registered ones (for example <c>org_id</c>, <c>client_id</c>).</summary>
    public IReadOnlyDictionary<string, string> Claims { get; init; } = new Dictionary<string, string>();

    /// <summary>Why the token was refused, safe to log and to return to the client.</summary>
    public string? Failure { get; init; }

    public static TokenValidationOutcome Invalid(string reason) => new() { IsValid = false, Failure = reason };
}
