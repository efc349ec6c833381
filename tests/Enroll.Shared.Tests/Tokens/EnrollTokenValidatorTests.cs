using System.Security.Cryptography;
using System.Text;
using Enroll.Shared.Tokens;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Shared.Tests.Tokens;

public sealed class EnrollTokenValidatorTests : IDisposable
{
    private const string Issuer = "https://enroll.test";
    private const string Type = "enroll-access+jwt";
    private const string Audience = "enroll-broker";
    private static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Lifetime = TimeSpan.FromMinutes(5);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly EnrollTokenValidator _validator;

    public EnrollTokenValidatorTests() => _validator = new EnrollTokenValidator(_time, Issuer, ClockSkew);

    public void Dispose()
    {
        _key.Dispose();
        _otherKey.Dispose();
    }

    private SecurityKey[] Keys => [new ECDsaSecurityKey(_key) { KeyId = "k1" }];

    private string Token(
        string issuer = Issuer,
        string audience = Audience,
        string headerType = Type,
        string claimType = Type,
        string keyId = "k1",
        ECDsa? signer = null,
        string algorithm = SecurityAlgorithms.EcdsaSha256,
        TimeSpan validFromNow = default)
    {
        var now = _time.GetUtcNow() + validFromNow;
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = (now + Lifetime).UtcDateTime,
            TokenType = headerType,
            SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(signer ?? _key) { KeyId = keyId }, algorithm),
            Claims = new Dictionary<string, object>(StringComparer.Ordinal)
            {
                [JwtRegisteredClaimNames.Sub] = "dev_1",
                [JwtRegisteredClaimNames.Jti] = "t1",
                ["typ"] = claimType,
                ["org_id"] = "org_1",
            },
        };
        return new JsonWebTokenHandler().CreateToken(descriptor);
    }

    private Task<TokenValidationOutcome> Validate(string token) => _validator.ValidateAsync(token, Type, Audience, Keys);

    private static void AssertRefused(TokenValidationOutcome outcome, string failure)
    {
        Assert.False(outcome.IsValid);
        Assert.Equal(failure, outcome.Failure);
        Assert.Null(outcome.Subject);
    }

    [Fact]
    public async Task Validate_Es256TokenFromAKnownKey_IsAcceptedWithItsClaims()
    {
        var outcome = await Validate(Token());

        Assert.True(outcome.IsValid, outcome.Failure);
        Assert.Equal("dev_1", outcome.Subject);
        Assert.Equal("t1", outcome.TokenId);
        Assert.Equal("k1", outcome.KeyId);
        Assert.Equal(_time.GetUtcNow(), outcome.IssuedAt);
        Assert.Equal(_time.GetUtcNow() + Lifetime, outcome.ExpiresAt);
        Assert.Equal("org_1", outcome.Claims["org_id"]);
        Assert.False(outcome.Claims.ContainsKey("sub"));
    }

    [Fact]
    public async Task Validate_AlgNone_IsRefused()
    {
        static string Part(string json) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(json));
        var exp = (_time.GetUtcNow() + Lifetime).ToUnixTimeSeconds();
        var unsigned = Part($$"""{"alg":"none","typ":"{{Type}}","kid":"k1"}""") + "."
            + Part($$"""{"iss":"{{Issuer}}","aud":"{{Audience}}","sub":"dev_1","jti":"t1","typ":"{{Type}}","exp":{{exp}}}""") + ".";

        var outcome = await Validate(unsigned);

        Assert.False(outcome.IsValid);
        Assert.NotNull(outcome.Failure);
    }

    [Fact]
    public async Task Validate_Es384FromAKnownKey_IsRefused()
    {
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var outcome = await _validator.ValidateAsync(
            Token(signer: p384, algorithm: SecurityAlgorithms.EcdsaSha384), Type, Audience, [new ECDsaSecurityKey(p384) { KeyId = "k1" }]);

        // IdentityModel reports the pinned algorithm's refusal as a signature failure.
        AssertRefused(outcome, "bad signature");
    }

    [Fact]
    public async Task Validate_WrongIssuer_IsRefused() =>
        AssertRefused(await Validate(Token(issuer: "https://elsewhere.test")), "wrong issuer");

    [Fact]
    public async Task Validate_WrongAudience_IsRefused() =>
        AssertRefused(await Validate(Token(audience: "enroll-registration")), "wrong audience");

    [Fact]
    public async Task Validate_WrongTypeHeader_IsRefused() =>
        AssertRefused(await Validate(Token(headerType: "enroll-registration+jwt")), "wrong token type");

    [Fact]
    public async Task Validate_RightTypeHeaderButWrongTypeClaim_IsRefused() =>
        AssertRefused(await Validate(Token(claimType: "enroll-registration+jwt")), "wrong token type");

    [Fact]
    public async Task Validate_ExpiredWithinClockSkew_IsAccepted()
    {
        var token = Token();
        _time.Advance(Lifetime + ClockSkew - TimeSpan.FromSeconds(1));

        Assert.True((await Validate(token)).IsValid);
    }

    [Fact]
    public async Task Validate_ExpiredBeyondClockSkew_IsRefused()
    {
        var token = Token();
        _time.Advance(Lifetime + ClockSkew + TimeSpan.FromSeconds(1));

        AssertRefused(await Validate(token), "token expired");
    }

    [Fact]
    public async Task Validate_BeforeItsNotBefore_IsRefused()
    {
        var token = Token(validFromNow: ClockSkew + TimeSpan.FromSeconds(1));

        AssertRefused(await Validate(token), "token not yet valid");
    }

    [Fact]
    public async Task Validate_UnknownKeyId_IsRefused() =>
        AssertRefused(await Validate(Token(keyId: "k2", signer: _otherKey)), "unknown signing key");

    [Fact]
    public async Task Validate_KnownKeyIdSignedByAnotherKey_IsRefused() =>
        AssertRefused(await Validate(Token(signer: _otherKey)), "bad signature");

    [Theory]
    [InlineData("")]
    [InlineData("not-a-token")]
    public async Task Validate_MissingOrMalformed_IsRefused(string token) =>
        Assert.False((await Validate(token)).IsValid);

    [Fact]
    public async Task Validate_LongerThan8192Characters_IsRefusedBeforeParsing() =>
        AssertRefused(await Validate(new string('a', 8193)), "token is too long");
}
