using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Shared.Tokens;

/// <summary>
/// The one validation path for every token Enroll issues (RFC 8725): the algorithm is pinned to ES256, the key must be
/// named by <c>kid</c> and known, and issuer, audience, explicit type (<c>typ</c> header and claim) and lifetime (with a
/// small clock skew) are all checked. Revocation is the caller's next step, by <c>jti</c> and device status.
/// </summary>
internal sealed class EnrollTokenValidator
{
    public const string Algorithm = SecurityAlgorithms.EcdsaSha256;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly TimeProvider _timeProvider;
    private readonly string _issuer;
    private readonly TimeSpan _clockSkew;

    public EnrollTokenValidator(TimeProvider timeProvider, string issuer, TimeSpan clockSkew)
    {
        _timeProvider = timeProvider;
        _issuer = issuer;
        _clockSkew = clockSkew;
    }

    public async Task<TokenValidationOutcome> ValidateAsync(string token, string expectedType, string expectedAudience, IEnumerable<SecurityKey> keys)
    {
        if (string.IsNullOrWhiteSpace(token))
        {
            return TokenValidationOutcome.Invalid("token is missing");
        }

        if (token.Length > 8192)
        {
            return TokenValidationOutcome.Invalid("token is too long");
        }

        var parameters = new TokenValidationParameters
        {
            ValidAlgorithms = [Algorithm],
            ValidTypes = [expectedType],
            ValidIssuer = _issuer,
            ValidAudience = expectedAudience,
            IssuerSigningKeys = keys,
            TryAllIssuerSigningKeys = false,
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            RequireAudience = true,
            ValidateIssuer = true,
            ValidateAudience = true,
            ValidateLifetime = true,
            ClockSkew = _clockSkew,
            LifetimeValidator = ValidateLifetime,
        };

        TokenValidationResult result;
        try
        {
            result = await _handler.ValidateTokenAsync(token, parameters).ConfigureAwait(false);
        }
        catch (ArgumentException)
        {
            return TokenValidationOutcome.Invalid("token is malformed");
        }

        if (!result.IsValid)
        {
            return TokenValidationOutcome.Invalid(Describe(result.Exception));
        }

        var jwt = (JsonWebToken)result.SecurityToken;
        if (!jwt.TryGetPayloadValue<string>("typ", out var claimType) || claimType != expectedType)
        {
            return TokenValidationOutcome.Invalid("wrong token type");
        }

        if (string.IsNullOrEmpty(jwt.Subject) || string.IsNullOrEmpty(jwt.Id) || string.IsNullOrEmpty(jwt.Kid))
        {
            return TokenValidationOutcome.Invalid("token lacks sub, jti or kid");
        }

        var claims = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var claim in result.ClaimsIdentity.Claims)
        {
            if (claim.ValueType == ClaimValueTypes.String && !IsRegistered(claim.Type))
            {
                claims[claim.Type] = claim.Value;
            }
        }

        return new TokenValidationOutcome
        {
            IsValid = true,
            Subject = jwt.Subject,
            TokenId = jwt.Id,
            KeyId = jwt.Kid,
            IssuedAt = new DateTimeOffset(jwt.IssuedAt, TimeSpan.Zero),
            ExpiresAt = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero),
            Claims = claims,
        };
    }

    private bool ValidateLifetime(DateTime? notBefore, DateTime? expires, SecurityToken token, TokenValidationParameters parameters)
    {
        var now = _timeProvider.GetUtcNow().UtcDateTime;
        if (expires is null)
        {
            throw new SecurityTokenNoExpirationException("token has no expiry");
        }

        if (expires.Value.Add(_clockSkew) < now)
        {
            throw new SecurityTokenExpiredException("token expired") { Expires = expires.Value };
        }

        if (notBefore is { } nbf && nbf.Subtract(_clockSkew) > now)
        {
            throw new SecurityTokenNotYetValidException("token not yet valid") { NotBefore = nbf };
        }

        return true;
    }

    private static bool IsRegistered(string type) =>
        type is "iss" or "aud" or "sub" or "typ" or "iat" or "exp" or "nbf" or "jti";

    private static string Describe(Exception? exception) => exception switch
    {
        SecurityTokenExpiredException => "token expired",
        SecurityTokenNotYetValidException => "token not yet valid",
        SecurityTokenInvalidTypeException => "wrong token type",
        SecurityTokenInvalidAudienceException => "wrong audience",
        SecurityTokenInvalidIssuerException => "wrong issuer",
        SecurityTokenInvalidAlgorithmException => "algorithm not allowed",
        SecurityTokenSignatureKeyNotFoundException => "unknown signing key",
        SecurityTokenInvalidSignatureException => "bad signature",
        SecurityTokenNoExpirationException => "token has no expiry",
        SecurityTokenMalformedException => "token is malformed",
        _ => "token is invalid",
    };
}
