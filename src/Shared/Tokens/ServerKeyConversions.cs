using System.Collections.Concurrent;
using System.Security.Cryptography;
using Enroll.Protocol.Messages;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Shared.Tokens;

/// <summary>Turns published EC P-256 keys into verification keys and back.</summary>
internal static class ServerKeyConversions
{
    /// <summary>Verification keys imported so far, by key ID and point; bounded by <see cref="MaxImportedKeys"/>.</summary>
    private static readonly ConcurrentDictionary<(string Kid, string X, string Y), SecurityKey> Imported = new();

    private const int MaxImportedKeys = 64;

    /// <summary>
    /// The key set's ES256 verification keys. A key already imported in this process is reused: importing a P-256 point
    /// checks it is on the curve, which costs about what a signature check does, and a process that runs many devices
    /// (a gateway, a load generator) would otherwise import the same public keys once per device. The keys are public and
    /// only ever verify, which any number of callers may do at once.
    /// </summary>
    public static IReadOnlyList<SecurityKey> ToVerificationKeys(ServerKeySet keySet)
    {
        var keys = new List<SecurityKey>();
        foreach (var key in keySet.Keys)
        {
            if (key.Kty != "EC" || key.Crv != "P-256" || key.Use != "sig" || key.Alg != "ES256")
            {
                continue;
            }

            var id = (key.Kid, key.X, key.Y);
            if (!Imported.TryGetValue(id, out var imported))
            {
                var ecdsa = ECDsa.Create(new ECParameters
                {
                    Curve = ECCurve.NamedCurves.nistP256,
                    Q = new ECPoint { X = Base64UrlEncoder.DecodeBytes(key.X), Y = Base64UrlEncoder.DecodeBytes(key.Y) },
                });
                if (Imported.Count >= MaxImportedKeys)
                {
                    Imported.Clear();
                }

                var candidate = new ECDsaSecurityKey(ecdsa) { KeyId = key.Kid };
                imported = Imported.GetOrAdd(id, candidate);
                if (!ReferenceEquals(imported, candidate))
                {
                    ecdsa.Dispose();
                }
            }

            keys.Add(imported);
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
