using System.Text;
using System.Text.Json;
using Enroll.Device.Connection;
using Enroll.Protocol;

namespace Enroll.Device.Tests.Fakes;

/// <summary>Server answers for the fake broker (tokens are well-formed JWTs; the tests turn signature checks off).</summary>
internal static class Answers
{
    public static string RequestId(OutgoingMessage request) => Encoding.UTF8.GetString(request.CorrelationData!);

    public static string Registered(OutgoingMessage request, string deviceId, DateTimeOffset now, TimeSpan? lifetime = null) =>
        JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["device_id"] = deviceId,
            ["jwt_token"] = Jwt(deviceId, TokenTypes.Access, now, lifetime ?? TimeSpan.FromHours(24)),
            ["expires_at"] = (now + (lifetime ?? TimeSpan.FromHours(24))).ToString("O"),
            ["request_id"] = RequestId(request),
        });

    public static string Error(OutgoingMessage request, string code, int? retryAfterSeconds = null) =>
        JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["error"] = new Dictionary<string, object?> { ["code"] = code, ["message"] = $"test says {code}", ["retry_after_seconds"] = retryAfterSeconds },
            ["request_id"] = RequestId(request),
        });

    public static string Jwt(string subject, string type, DateTimeOffset issuedAt, TimeSpan lifetime)
    {
        static string Part(object value) => Convert.ToBase64String(JsonSerializer.SerializeToUtf8Bytes(value)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var header = Part(new Dictionary<string, object> { ["alg"] = "ES256", ["typ"] = type, ["kid"] = "test" });
        var payload = Part(new Dictionary<string, object>
        {
            ["sub"] = subject,
            ["typ"] = type,
            ["iat"] = issuedAt.ToUnixTimeSeconds(),
            ["exp"] = (issuedAt + lifetime).ToUnixTimeSeconds(),
            ["jti"] = Guid.NewGuid().ToString("N"),
        });
        return $"{header}.{payload}.c2lnbmF0dXJl";
    }
}
