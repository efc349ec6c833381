using Enroll.Protocol.Messages;

namespace Enroll.Server.Tokens;

/// <summary>
/// The server's public key set (JWKS): signing keys (<c>use: sig</c>, ES256) and encryption keys (<c>use: enc</c>,
/// ECDH-ES), newest first. Served at <c>/.well-known/jwks.json</c> and retained on <c>enroll/v1/server/keys</c>.
/// </summary>
internal sealed class PublishedKeys(SigningKeyRing signing, EncryptionKeyRing encryption)
{
    /// <summary>Raised after a rotation, so the retained key set can be republished.</summary>
    public event Action? Changed;

    public ServerKeySet KeySet => new([.. signing.KeySet.Keys, .. encryption.PublicKeys()]);

    /// <summary>Makes new signing and encryption keys current and drops keys beyond <see cref="SigningKeyRing.KeysKept"/>.</summary>
    public (string SigningKeyId, string EncryptionKeyId, int Pruned) Rotate()
    {
        var signingKey = signing.Rotate();
        var encryptionKey = encryption.Rotate();
        var pruned = signing.Prune(SigningKeyRing.KeysKept) + encryption.Prune(SigningKeyRing.KeysKept);
        Changed?.Invoke();
        return (signingKey.KeyId, encryptionKey.KeyId, pruned);
    }
}
