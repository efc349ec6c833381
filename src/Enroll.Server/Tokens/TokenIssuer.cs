using System.Security.Cryptography;
using Enroll.Protocol;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Tokens;

/// <summary>A token the server signed.</summary>
internal sealed record IssuedToken(string Token, string TokenId, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt);

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

    public IssuedToken IssueAccessToken(string deviceId, string orgId, string clientId) =>
        Issue(TokenTypes.Access, TokenAudiences.Broker, deviceId, orgId, clientId, _options.AccessTokenLifetime);

    public IssuedToken IssueRegistrationToken(string deviceId, string orgId, string clientId, TimeSpan? lifetime = null) =>
        Issue(TokenTypes.Registration, TokenAudiences.Registration, deviceId, orgId, clientId, lifetime ?? _options.RegistrationTokenLifetime);

    private IssuedToken Issue(string type, string audience, string deviceId, string orgId, string clientId, TimeSpan lifetime)
    {
        // Whole seconds: JWT NumericDate has second precision, and the device compares against what it reads back.
        var now = DateTimeOffset.FromUnixTimeSeconds(_timeProvider.GetUtcNow().ToUnixTimeSeconds());
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
