namespace Enroll.Device;

/// <summary>
/// Everything a device must remember between runs: who it is, its tokens, and where a pending provisioning operation
/// stands. Stored by an <see cref="ICredentialStore"/>.
/// </summary>
public sealed record DeviceCredentials
{
    /// <summary>The Client ID this state belongs to.</summary>
    public required string ClientId { get; init; }

    /// <summary>The Device ID the server assigned, once registered.</summary>
    public string? DeviceId { get; init; }

    /// <summary>The organisation the device belongs to.</summary>
    public string? OrgId { get; init; }

    /// <summary>The current access token (MQTT password).</summary>
    public string? AccessToken { get; init; }

    /// <summary>When <see cref="AccessToken"/> expires.</summary>
    public DateTimeOffset? AccessTokenExpiresAt { get; init; }

    /// <summary>When <see cref="AccessToken"/> was issued.</summary>
    public DateTimeOffset? AccessTokenIssuedAt { get; init; }

    /// <summary>
    /// When to renew <see cref="AccessToken"/>, in the server's time: when about 20 % of its lifetime remains, moved by a
    /// random few percent. Chosen once per token; null for tokens stored by older versions (then computed without jitter).
    /// </summary>
    public DateTimeOffset? AccessTokenRenewAt { get; init; }

    /// <summary>The current Registration Token.</summary>
    public string? RegistrationToken { get; init; }

    /// <summary>When <see cref="RegistrationToken"/> expires.</summary>
    public DateTimeOffset? RegistrationTokenExpiresAt { get; init; }

    /// <summary>When <see cref="RegistrationToken"/> was issued (for the refresh schedule).</summary>
    public DateTimeOffset? RegistrationTokenIssuedAt { get; init; }

    /// <summary>
    /// When to refresh <see cref="RegistrationToken"/>: when about 20 % of its lifetime remains, moved by a random few
    /// percent so a fleet does not refresh in the same second. Chosen once per token.
    /// </summary>
    public DateTimeOffset? RegistrationTokenRefreshAt { get; init; }

    /// <summary>The Provisioning Token the device was set up with, kept to re-provision after a revocation.</summary>
    public string? ProvisioningToken { get; init; }

    /// <summary>A provisioning operation waiting for an operator.</summary>
    public string? PendingOperationId { get; init; }

    /// <summary>When <see cref="PendingOperationId"/> expires on the server.</summary>
    public DateTimeOffset? PendingOperationExpiresAt { get; init; }

    /// <summary>The server's signing keys (JWKS JSON) trusted when the tokens were validated.</summary>
    public string? ServerKeys { get; init; }

    /// <summary>When the device last registered successfully.</summary>
    public DateTimeOffset? RegisteredAt { get; init; }

    /// <summary>True when there is an access token valid beyond <paramref name="now"/> + <paramref name="margin"/>.</summary>
    public bool HasValidAccessToken(DateTimeOffset now, TimeSpan margin) =>
        DeviceId is not null && AccessToken is not null && AccessTokenExpiresAt is { } expires && expires - margin > now;

    /// <summary>True when there is a Registration Token valid beyond <paramref name="now"/>.</summary>
    public bool HasValidRegistrationToken(DateTimeOffset now) =>
        DeviceId is not null && RegistrationToken is not null && RegistrationTokenExpiresAt is { } expires && expires > now;
}
