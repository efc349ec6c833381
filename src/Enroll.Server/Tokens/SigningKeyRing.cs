using System.Security.Cryptography;
using Enroll.Protocol.Messages;
using Enroll.Shared.Files;
using Enroll.Shared.Tokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Tokens;

/// <summary>
/// The server's ES256 signing keys, one PKCS#8 PEM file each in <c>{data}/keys/</c> (mode 0600). The newest key signs;
/// older ones stay published (JWKS) and accepted until tokens signed with them have expired. Key IDs are RFC 7638
/// thumbprints.
/// </summary>
internal sealed class SigningKeyRing : IDisposable
{
    /// <summary>
    /// Keys kept after a rotation (the current one and the previous ones): tokens signed by a key stay valid while it is
    /// kept, so rotate at most every (token lifetime ÷ 2) to never cut a device off.
    /// </summary>
    public const int KeysKept = 3;

    private const string Prefix = "signing-";
    private readonly string _directory;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _lock = new();
    private List<SigningKey> _keys = [];

    public SigningKeyRing(string directory, TimeProvider timeProvider)
    {
        _directory = OwnerOnlyFiles.EnsureDirectory(directory);
        _timeProvider = timeProvider;
        Load();
        if (_keys.Count == 0)
        {
            Rotate();
            Created = true;
        }
    }

    /// <summary>True when this start created the first key.</summary>
    public bool Created { get; }

    /// <summary>The key new tokens are signed with.</summary>
    public SigningKey Current
    {
        get
        {
            lock (_lock)
            {
                return _keys[^1];
            }
        }
    }

    /// <summary>Every key tokens may still be signed with, newest last.</summary>
    public IReadOnlyList<SigningKey> All
    {
        get
        {
            lock (_lock)
            {
                return _keys.ToList();
            }
        }
    }

    /// <summary>The verification keys of every kept key.</summary>
    public IReadOnlyList<SecurityKey> VerificationKeys
    {
        get
        {
            lock (_lock)
            {
                return _keys.Select(k => (SecurityKey)k.SecurityKey).ToList();
            }
        }
    }

    /// <summary>The public keys as a JWKS.</summary>
    public ServerKeySet KeySet
    {
        get
        {
            lock (_lock)
            {
                return new ServerKeySet(_keys.Select(k => ServerKeyConversions.ToServerKey(k.Key, k.KeyId)).Reverse().ToList());
            }
        }
    }

    /// <summary>Creates a new current key; previous keys stay valid for verification.</summary>
    public SigningKey Rotate()
    {
        var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var keyId = Thumbprint(ecdsa);
        var created = _timeProvider.GetUtcNow();
        var file = KeyFiles.Write(_directory, Prefix, created, keyId, ecdsa.ExportPkcs8PrivateKeyPem());
        var key = new SigningKey(keyId, ecdsa, created, file);
        lock (_lock)
        {
            _keys = [.. _keys, key];
        }

        return key;
    }

    /// <summary>Deletes keys older than the newest <paramref name="keep"/>.</summary>
    public int Prune(int keep)
    {
        List<SigningKey> removed;
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

    private void Load()
    {
        var keys = new List<SigningKey>();
        foreach (var (file, created, pem) in KeyFiles.Read(_directory, Prefix))
        {
            var ecdsa = ECDsa.Create();
            ecdsa.ImportFromPem(pem);
            keys.Add(new SigningKey(Thumbprint(ecdsa), ecdsa, created, file));
        }

        _keys = keys;
    }

    /// <summary>RFC 7638 JWK thumbprint of an EC public key.</summary>
    internal static string Thumbprint(ECDsa key) => KeyFiles.Thumbprint(key.ExportParameters(false));

    public void Dispose()
    {
        foreach (var key in _keys)
        {
            key.Key.Dispose();
        }
    }
}

/// <summary>One signing key.</summary>
internal sealed record SigningKey(string KeyId, ECDsa Key, DateTimeOffset CreatedAt, string File)
{
    public ECDsaSecurityKey SecurityKey { get; } = new(Key) { KeyId = KeyId };

    public SigningCredentials Credentials { get; } = new(new ECDsaSecurityKey(Key) { KeyId = KeyId }, SecurityAlgorithms.EcdsaSha256);
}
