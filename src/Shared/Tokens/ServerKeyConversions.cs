using System.Security.Cryptography;
using Enroll.Protocol.Messages;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Shared.Tokens;

/// <summary>Turns published EC P-256 keys into verification keys and back.</summary>
internal static class ServerKeyConversions
{
    public static IReadOnlyList<SecurityKey> ToVerificationKeys(ServerKeySet keySet)
    {
        var keys = new List<SecurityKey>();
        foreach (var key in keySet.Keys)
        {
            if (key.Kty != "EC" || key.Crv != "P-256" || key.Use != "sig" || key.Alg != "ES256")
            {
                continue;
            }

            var ecdsa = ECDsa.Create(new ECParameters
            {
                Curve = ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = Base64UrlEncoder.DecodeBytes(key.X), Y = Base64UrlEncoder.DecodeBytes(key.Y) },
            });
            keys.Add(new ECDsaSecurityKey(ecdsa) { KeyId = key.Kid });
        }

        return keys;
    }

    /// <summary>The newest encryption key (<c>use: enc</c>, ECDH-ES, P-256) of a key set, or null when it has none.</summary>
    public static (string KeyId, ECDiffieHellman Key)? ToEncryptionKey(ServerKeySet keySet)
    {
        foreach (var key in keySet.Keys)
        {
            if (key.Kty == "EC" && key.Crv == "P-256" && key.Use == "enc" && key.Alg == "ECDH-ES")
            {
                var ecdh = ECDiffieHellman.Create(new ECParameters
                {
                    Curve = ECCurve.NamedCurves.nistP256,
                    Q = new ECPoint { X = Base64UrlEncoder.DecodeBytes(key.X), Y = Base64UrlEncoder.DecodeBytes(key.Y) },
                });
                return (key.Kid, ecdh);
            }
        }

        return null;
    }

    public static ServerKey ToServerKey(ECDsa key, string keyId, string use = "sig", string alg = "ES256")
    {
        var parameters = key.ExportParameters(includePrivateParameters: false);
        return new ServerKey
        {
            Kty = "EC",
            Crv = "P-256",
            X = Base64UrlEncoder.Encode(parameters.Q.X!),
            Y = Base64UrlEncoder.Encode(parameters.Q.Y!),
            Kid = keyId,
            Use = use,
            Alg = alg,
        };
    }
}
