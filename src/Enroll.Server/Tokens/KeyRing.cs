using System.Security.Cryptography;
using Enroll.Shared.Files;

namespace Enroll.Server.Tokens;

/// <summary>One key of a <see cref="KeyRing{TAlgorithm, TKey}"/>: its RFC 7638 thumbprint, the key, when it was made and its file.</summary>
internal abstract record RingKey<TAlgorithm>(string KeyId, TAlgorithm Key, DateTimeOffset CreatedAt, string File)
    where TAlgorithm : ECAlgorithm;

/// <summary>
/// P-256 keys kept one PKCS#8 PEM file each (mode 0600) under a name prefix in <c>{data}/keys/</c>, newest last. The
/// newest is the current key; older ones stay usable until pruned, so a rotation never cuts off what the previous key
/// signed or what devices encrypted to it. Key IDs are RFC 7638 thumbprints. The signing and encryption rings differ only
/// in the algorithm and in how they publish their keys.
/// </summary>
internal abstract class KeyRing<TAlgorithm, TKey> : IDisposable
    where TAlgorithm : ECAlgorithm
    where TKey : RingKey<TAlgorithm>
{
    private readonly string _directory;
    private readonly string _prefix;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _lock = new();
    private List<TKey> _keys = [];

    protected KeyRing(string directory, string prefix, TimeProvider timeProvider)
    {
        _directory = OwnerOnlyFiles.EnsureDirectory(directory);
        _prefix = prefix;
        _timeProvider = timeProvider;
        foreach (var (file, created, pem) in KeyFiles.Read(_directory, prefix))
        {
            var algorithm = CreateAlgorithm(generate: false);
            algorithm.ImportFromPem(pem);
            _keys.Add(Wrap(KeyFiles.Thumbprint(algorithm.ExportParameters(false)), algorithm, created, file));
        }

        if (_keys.Count == 0)
        {
            Rotate();
            Created = true;
        }
    }

    /// <summary>True when this start created the first key.</summary>
    public bool Created { get; }

    /// <summary>The newest key: it signs, or it is the one published for devices to encrypt to.</summary>
    public TKey Current
    {
        get
        {
            lock (_lock)
            {
                return _keys[^1];
            }
        }
    }

    /// <summary>Every kept key, newest last.</summary>
    public IReadOnlyList<TKey> All
    {
        get
        {
            lock (_lock)
            {
                return _keys.ToList();
            }
        }
    }

    /// <summary>The key <paramref name="keyId"/> names, if it is still kept.</summary>
    public TAlgorithm? Find(string keyId)
    {
        lock (_lock)
        {
            return _keys.FirstOrDefault(k => k.KeyId == keyId)?.Key;
        }
    }

    /// <summary>Creates a new current key; the previous ones stay until <see cref="Prune"/>.</summary>
    public TKey Rotate()
    {
        var algorithm = CreateAlgorithm(generate: true);
        var keyId = KeyFiles.Thumbprint(algorithm.ExportParameters(false));
        var created = _timeProvider.GetUtcNow();
        var file = KeyFiles.Write(_directory, _prefix, created, keyId, algorithm.ExportPkcs8PrivateKeyPem());
        var key = Wrap(keyId, algorithm, created, file);
        lock (_lock)
        {
            _keys = [.. _keys, key];
        }

        return key;
    }

    /// <summary>Deletes keys older than the newest <paramref name="keep"/>; returns how many.</summary>
    public int Prune(int keep)
    {
        List<TKey> removed;
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
        foreach (var key in All)
        {
            key.Key.Dispose();
        }
    }

    /// <summary>A new P-256 key when <paramref name="generate"/>, else an empty one to import into.</summary>
    protected abstract TAlgorithm CreateAlgorithm(bool generate);

    protected abstract TKey Wrap(string keyId, TAlgorithm key, DateTimeOffset createdAt, string file);
}
