using System.Security.Cryptography;
using Enroll.Protocol;
using Enroll.Server.Registry;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Tokens;

/// <summary>A token the server signed.</summary>
internal sealed record IssuedToken(string Token, string TokenId, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt);

/// <summary>
/// Whom a token is for: the device, its organisation and client, and the device's revocation boundary (a token is never
/// dated before it). A device that does not exist yet has no boundary.
/// </summary>
internal readonly record struct TokenSubject(string DeviceId, string OrgId, string ClientId, DateTimeOffset? TokensValidAfter)
{
    public static TokenSubject Of(DeviceRecord device) => new(device.DeviceId, device.OrgId, device.ClientId, device.TokensValidAfter);
}

/// <summary>
/// Signs access tokens and Registration Tokens with the current ES256 key: <c>iss</c>, <c>aud</c>, <c>sub</c> = Device ID,
/// <c>typ</c> (header and claim), <c>iat</c>, <c>nbf</c>, <c>exp</c>, <c>jti</c>, plus <c>org_id</c> and <c>client_id</c>.
/// </summary>
internal sealed class TokenIssuer
{
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };
    private readonly SigningKeyRing _keys;
    private readonly TimeProvider _timeProvider;
    private readonly EnrollServerOptions _options;

    public TokenIssuer(SigningKeyRing keys, TimeProvider timeProvider, IOptions<EnrollServerOptions> options)
    {
        _keys = keys;
        _timeProvider = timeProvider;
        _options = options.Value;
    }

    public IssuedToken IssueAccessToken(DeviceRecord device) =>
        Issue(TokenTypes.Access, TokenAudiences.Broker, TokenSubject.Of(device), _options.AccessTokenLifetime);

    public IssuedToken IssueRegistrationToken(DeviceRecord device, TimeSpan? lifetime = null) =>
        IssueRegistrationToken(TokenSubject.Of(device), lifetime);

    public IssuedToken IssueRegistrationToken(TokenSubject subject, TimeSpan? lifetime = null) =>
        Issue(TokenTypes.Registration, TokenAudiences.Registration, subject, lifetime ?? _options.RegistrationTokenLifetime);

    private IssuedToken Issue(string type, string audience, TokenSubject subject, TimeSpan lifetime)
    {
        var (deviceId, orgId, clientId) = (subject.DeviceId, subject.OrgId, subject.ClientId);

        // Whole seconds: JWT NumericDate has second precision. Never date a token before the device's last revocation
        // boundary, or it would be born revoked (see IDeviceStore.TokensValidAfter).
        var now = DateTimeOffset.FromUnixTimeSeconds(_timeProvider.GetUtcNow().ToUnixTimeSeconds());
        if (subject.TokensValidAfter is { } validAfter && validAfter > now)
        {
            now = validAfter;
        }

        var expires = now + lifetime;
        var tokenId = NewTokenId();
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = _options.Issuer,
            Audience = audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = expires.UtcDateTime,
            TokenType = type,
            SigningCredentials = _keys.Current.Credentials,
            Claims = new Dictionary<string, object>(StringComparer.Ordinal)
            {
                [JwtRegisteredClaimNames.Sub] = deviceId,
                [JwtRegisteredClaimNames.Jti] = tokenId,
                ["typ"] = type,
                ["org_id"] = orgId,
                ["client_id"] = clientId,
            },
        };
        return new IssuedToken(_handler.CreateToken(descriptor), tokenId, now, expires);
    }

    private static string NewTokenId()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        return Base64UrlEncoder.Encode(bytes.ToArray());
    }
}
