using System.Security.Cryptography;
using Enroll.Protocol.Messages;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Tokens;

/// <summary>
/// The server's P-256 ECDH keys for end-to-end encrypted requests (SPEC §4.3), kept like the signing keys in the
/// registry. The newest is published for devices to encrypt to; older ones are still accepted
/// until rotated out, so devices holding the previous key keep working through a rotation.
/// </summary>
internal sealed class EncryptionKeyRing(Registry.IKeyStore store, KeyEncryptionKey kek, TimeProvider timeProvider)
    : KeyRing<ECDiffieHellman, EncryptionKey>(store, kek, Registry.KeyUse.Encryption, timeProvider)
{
    /// <summary>The public keys for the JWKS, newest first.</summary>
    public IEnumerable<ServerKey> PublicKeys() => All.Reverse<EncryptionKey>().Select(k =>
    {
        var q = k.Key.ExportParameters(false).Q;
        return new ServerKey { Kty = "EC", Crv = "P-256", X = Base64UrlEncoder.Encode(q.X!), Y = Base64UrlEncoder.Encode(q.Y!), Kid = k.KeyId, Use = "enc", Alg = "ECDH-ES" };
    });

    protected override ECDiffieHellman CreateAlgorithm(bool generate) =>
        generate ? ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256) : ECDiffieHellman.Create();

    protected override EncryptionKey Wrap(string keyId, ECDiffieHellman key, DateTimeOffset createdAt) =>
        new(keyId, key, createdAt);
}

/// <summary>One encryption key.</summary>
internal sealed record EncryptionKey(string KeyId, ECDiffieHellman Key, DateTimeOffset CreatedAt)
    : RingKey<ECDiffieHellman>(KeyId, Key, CreatedAt);
