using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Topics;
using Enroll.Server.Tokens;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;
using MQTTnet;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

/// <summary>RFC 8725 attacks on the server's tokens, each tried at the broker (access tokens) and the refresh handler (Registration Tokens).</summary>
public sealed class TokenValidationTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestServer _server = null!;
    private readonly TempDirectory _state = new();
    private string _deviceId = null!;
    private string _accessToken = null!;
    private string _registrationToken = null!;

    public async Task InitializeAsync()
    {
        // Every attack below fails on purpose; lift the failure limits so each one meets the validator, not the limiter.
        _server = await TestServer.StartAsync(output, o =>
        {
            o.ClientFailureLimit = 10_000;
            o.SourceFailureLimit = 10_000;
        });
        var token = await _server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(_server.MqttEndpoint, "jwt-1", _state.Path, token.Token, output);
        _deviceId = (await device.Registration.StartAsync()).DeviceId;
        var stored = await device.Store.LoadAsync();
        _accessToken = stored!.AccessToken!;
        _registrationToken = stored.RegistrationToken!;
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _state.Dispose();
    }

    public static TheoryData<string> Attacks() =>
    [
        "alg-none", "hs256-with-public-key", "wrong-issuer", "wrong-audience", "wrong-typ-header", "wrong-typ-claim",
        "expired", "unknown-kid", "no-kid", "tampered-payload", "other-device-subject", "no-expiry",
    ];

    [Fact]
    public async Task GenuineTokens_AreAccepted()
    {
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(_accessToken));
        Assert.Null(await RefreshErrorAsync(_registrationToken));
    }

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task ForgedAccessToken_IsRefusedAtConnect(string attack)
    {
        var forged = Forge(_accessToken, attack);
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(forged));
    }

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task ForgedRegistrationToken_IsRefusedByRefresh(string attack)
    {
        var forged = Forge(_registrationToken, attack);
        Assert.Equal(ErrorCodes.Unauthorized, await RefreshErrorAsync(forged));
    }

    [Fact]
    public async Task RegistrationToken_UsedAsAccessToken_IsRefused() =>
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(_registrationToken));

    [Fact]
    public async Task AccessToken_UsedAsRegistrationToken_IsRefused() =>
        Assert.Equal(ErrorCodes.Unauthorized, await RefreshErrorAsync(_accessToken));

    [Fact]
    public async Task TokensOfARevokedDevice_AreRefused()
    {
        await _server.RevokeDeviceAsync(_deviceId);
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectAsync(_accessToken));
        Assert.Equal(ErrorCodes.Unauthorized, await RefreshErrorAsync(_registrationToken));
    }

    [Fact]
    public async Task TokensSignedByAPreviousKey_StayValidAfterRotation_AndTheKeySetServesBoth()
    {
        using var rotate = await _server.Http.PostAsync("/api/keys/rotate", null);
        rotate.EnsureSuccessStatusCode();

        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(_accessToken));
        var jwks = await _server.Http.GetStringAsync("/.well-known/jwks.json");
        using var document = JsonDocument.Parse(jwks);
        Assert.Equal(2, document.RootElement.GetProperty("keys").EnumerateArray().Count(k => k.GetProperty("use").GetString() == "sig"));
    }

    private Task<MqttClientConnectResultCode> ConnectAsync(string password) =>
        RawMqttClient.TryConnectAsync(_server.MqttEndpoint, "jwt-1", _deviceId, password);

    private async Task<string?> RefreshErrorAsync(string registrationToken)
    {
        await using var client = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "jwt-1");
        await client.SubscribeAsync(EnrollTopics.ClientResponses("jwt-1"));
        await client.PublishAsync(EnrollTopics.TokensRefresh, $$"""{"registration_token":"{{registrationToken}}","client_id":"jwt-1"}""", EnrollTopics.ClientResponses("jwt-1"));
        using var answer = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync()));
        return answer.RootElement.TryGetProperty("error", out var error) ? error.GetProperty("code").GetString() : null;
    }

    /// <summary>Builds the attack from a genuine token: same claims, one thing wrong, signed with the server's own key where that matters.</summary>
    private string Forge(string genuine, string attack)
    {
        var parts = genuine.Split('.');
        var header = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(Base64UrlEncoder.DecodeBytes(parts[0]))!
            .ToDictionary(p => p.Key, p => (object?)p.Value.Clone());
        var payload = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(Base64UrlEncoder.DecodeBytes(parts[1]))!
            .ToDictionary(p => p.Key, p => (object?)p.Value.Clone());
        var key = _server.Host.Services.GetRequiredService<SigningKeyRing>().Current;
        var sign = (Func<byte[], byte[]>)(data => key.Key.SignData(data, HashAlgorithmName.SHA256));

        switch (attack)
        {
            case "alg-none":
                header["alg"] = "none";
                return $"{Encode(header)}.{Encode(payload)}.";
            case "hs256-with-public-key":
                header["alg"] = "HS256";
                var publicKey = Encoding.UTF8.GetBytes(key.Key.ExportSubjectPublicKeyInfoPem());
                sign = data => HMACSHA256.HashData(publicKey, data);
                break;
            case "wrong-issuer":
                payload["iss"] = "https://evil.example";
                break;
            case "wrong-audience":
                payload["aud"] = "somebody-else";
                break;
            case "wrong-typ-header":
                header["typ"] = "JWT";
                break;
            case "wrong-typ-claim":
                payload["typ"] = payload["typ"]!.ToString() == TokenTypes.Access ? TokenTypes.Registration : TokenTypes.Access;
                break;
            case "expired":
                var past = DateTimeOffset.UtcNow.AddHours(-2).ToUnixTimeSeconds();
                payload["iat"] = past - 3600;
                payload["nbf"] = past - 3600;
                payload["exp"] = past;
                break;
            case "unknown-kid":
                using (var rogue = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    header["kid"] = "rogue-key";
                    var signingInput = Encoding.ASCII.GetBytes($"{Encode(header)}.{Encode(payload)}");
                    return $"{Encode(header)}.{Encode(payload)}.{Base64UrlEncoder.Encode(rogue.SignData(signingInput, HashAlgorithmName.SHA256))}";
                }

            case "no-kid":
                header.Remove("kid");
                break;
            case "tampered-payload":
                payload["org_id"] = "another-org";
                return $"{parts[0]}.{Encode(payload)}.{parts[2]}";
            case "other-device-subject":
                payload["sub"] = "dev_someone_else";
                break;
            case "no-expiry":
                payload.Remove("exp");
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(attack), attack, null);
        }

        var input = Encoding.ASCII.GetBytes($"{Encode(header)}.{Encode(payload)}");
        return $"{Encode(header)}.{Encode(payload)}.{Base64UrlEncoder.Encode(sign(input))}";
    }

    private static string Encode(Dictionary<string, object?> part) => Base64UrlEncoder.Encode(JsonSerializer.SerializeToUtf8Bytes(part));
}
