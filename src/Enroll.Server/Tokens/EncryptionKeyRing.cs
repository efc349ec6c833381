using System.Security.Cryptography;
using Enroll.Protocol.Messages;
using Enroll.Shared.Files;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Tokens;

/// <summary>
/// The server's P-256 ECDH keys for end-to-end encrypted requests (SPEC §4.3), kept like the signing keys in
/// <c>{data}/keys/encryption-*.pem</c>. The newest is published for devices to encrypt to; older ones are still accepted
/// until rotated out, so devices holding the previous key keep working through a rotation.
/// </summary>
internal sealed class EncryptionKeyRing : IDisposable
{
    private const string Prefix = "encryption-";
    private readonly string _directory;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _lock = new();
    private List<EncryptionKey> _keys = [];

    public EncryptionKeyRing(string directory, TimeProvider timeProvider)
    {
        _directory = OwnerOnlyFiles.EnsureDirectory(directory);
        _timeProvider = timeProvider;
        foreach (var (file, created, pem) in KeyFiles.Read(_directory, Prefix))
        {
            var key = ECDiffieHellman.Create();
            key.ImportFromPem(pem);
            _keys.Add(new EncryptionKey(KeyFiles.Thumbprint(key.ExportParameters(false)), key, created, file));
        }

        if (_keys.Count == 0)
        {
            Rotate();
        }
    }

    public EncryptionKey Current
    {
        get
        {
            lock (_lock)
            {
                return _keys[^1];
            }
        }
    }

    public IReadOnlyList<EncryptionKey> All
    {
        get
        {
            lock (_lock)
            {
                return _keys.ToList();
            }
        }
    }

    /// <summary>The key a request's <c>kid</c> names, if it is still kept.</summary>
    public ECDiffieHellman? Find(string keyId)
    {
        lock (_lock)
        {
            return _keys.FirstOrDefault(k => k.KeyId == keyId)?.Key;
        }
    }

    /// <summary>The public keys for the JWKS, newest first.</summary>
    public IEnumerable<ServerKey> PublicKeys() => All.Reverse<EncryptionKey>().Select(k =>
    {
        var q = k.Key.ExportParameters(false).Q;
        return new ServerKey { Kty = "EC", Crv = "P-256", X = Base64UrlEncoder.Encode(q.X!), Y = Base64UrlEncoder.Encode(q.Y!), Kid = k.KeyId, Use = "enc", Alg = "ECDH-ES" };
    });

    public EncryptionKey Rotate()
    {
        var ecdh = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        var keyId = KeyFiles.Thumbprint(ecdh.ExportParameters(false));
        var created = _timeProvider.GetUtcNow();
        var file = KeyFiles.Write(_directory, Prefix, created, keyId, ecdh.ExportPkcs8PrivateKeyPem());
        var key = new EncryptionKey(keyId, ecdh, created, file);
        lock (_lock)
        {
            _keys = [.. _keys, key];
        }

        return key;
    }

    public int Prune(int keep)
    {
        List<EncryptionKey> removed;
        lock (_lock)
        {
            if (_keys.Count <= keep)
            {
                return 0;
            }

            removed = _keys.Take(_keys.Count - keep).ToList();
            _keys = _keys.Skip(_keys.Count - keep).ToList();
        }

        foreach (var key in removed)
        {
            File.Delete(key.File);
            key.Key.Dispose();
        }

        return removed.Count;
    }

    public void Dispose()
    {
        foreach (var key in _keys)
        {
            key.Key.Dispose();
        }
    }
}

/// <summary>One encryption key.</summary>
internal sealed record EncryptionKey(string KeyId, ECDiffieHellman Key, DateTimeOffset CreatedAt, string File);
