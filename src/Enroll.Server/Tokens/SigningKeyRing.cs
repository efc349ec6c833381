using System.Security.Cryptography;
using Enroll.Protocol.Messages;
using Enroll.Shared.Tokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Tokens;

/// <summary>
/// The server's ES256 signing keys, kept in the registry (<see cref="Registry.IKeyStore"/>) sealed under the
/// key-encryption key. The newest key signs; older ones stay published (JWKS) and accepted until tokens signed with them
/// have expired.
/// </summary>
internal sealed class SigningKeyRing(Registry.IKeyStore store, KeyEncryptionKey kek, TimeProvider timeProvider)
    : KeyRing<ECDsa, SigningKey>(store, kek, Registry.KeyUse.Signing, timeProvider)
{
    /// <summary>
    /// Keys kept after a rotation (the current one and the previous ones): tokens signed by a key stay valid while it is
    /// kept, so rotate at most every (token lifetime ÷ 2) to never cut a device off.
    /// </summary>
    public const int KeysKept = 3;

    /// <summary>The verification keys of every kept key.</summary>
    public IReadOnlyList<SecurityKey> VerificationKeys => All.Select(k => (SecurityKey)k.SecurityKey).ToList();

    /// <summary>The public keys as a JWKS, newest first.</summary>
    public ServerKeySet KeySet => new(All.Select(k => ServerKeyConversions.ToServerKey(k.Key, k.KeyId)).Reverse().ToList());

    protected override ECDsa CreateAlgorithm(bool generate) =>
        generate ? ECDsa.Create(ECCurve.NamedCurves.nistP256) : ECDsa.Create();

    protected override SigningKey Wrap(string keyId, ECDsa key, DateTimeOffset createdAt) =>
        new(keyId, key, createdAt);
}

/// <summary>One signing key.</summary>
internal sealed record SigningKey(string KeyId, ECDsa Key, DateTimeOffset CreatedAt)
    : RingKey<ECDsa>(KeyId, Key, CreatedAt)
{
    public ECDsaSecurityKey SecurityKey { get; } = new(Key) { KeyId = KeyId };

    public SigningCredentials Credentials { get; } = new(new ECDsaSecurityKey(Key) { KeyId = KeyId }, SecurityAlgorithms.EcdsaSha256);
}
