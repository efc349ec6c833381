using System.Security.Cryptography;
using Enroll.Server.Registry;

namespace Enroll.Server.Tokens;

/// <summary>One key of a <see cref="KeyRing{TAlgorithm, TKey}"/>: its RFC 7638 thumbprint, the key and when it was made.</summary>
internal abstract record RingKey<TAlgorithm>(string KeyId, TAlgorithm Key, DateTimeOffset CreatedAt)
    where TAlgorithm : ECAlgorithm;

/// <summary>
/// The P-256 keys of one use, as the registry holds them (<see cref="IKeyStore"/>, private keys sealed under the
/// <see cref="KeyEncryptionKey"/>), oldest first. The newest is the current key; older ones stay usable until pruned, so
/// a rotation never cuts off what the previous key signed or what devices encrypted to it. Key IDs are RFC 7638
/// thumbprints. The ring is empty until <see cref="ReloadAsync"/> first reads the store (<see cref="ServerKeysStartup"/>,
/// before the broker starts); a reload replaces the held keys by the stored ones, so every instance on a database holds
/// the same keys. The signing and encryption rings differ only in the algorithm and in how they publish their keys.
/// </summary>
internal abstract class KeyRing<TAlgorithm, TKey> : IDisposable
    where TAlgorithm : ECAlgorithm
    where TKey : RingKey<TAlgorithm>
{
    private readonly IKeyStore _store;
    private readonly KeyEncryptionKey _kek;
    private readonly TimeProvider _timeProvider;
    private readonly SemaphoreSlim _reload = new(1, 1);
    private readonly Lock _lock = new();
    private List<TKey> _keys = [];

    protected KeyRing(IKeyStore store, KeyEncryptionKey kek, KeyUse use, TimeProvider timeProvider)
    {
        _store = store;
        _kek = kek;
        Use = use;
        _timeProvider = timeProvider;
    }

    public KeyUse Use { get; }

    /// <summary>The newest key: it signs, or it is the one published for devices to encrypt to.</summary>
    public TKey Current
    {
        get
        {
            lock (_lock)
            {
                return _keys.Count > 0 ? _keys[^1] : throw new InvalidOperationException($"the {Use} keys are not loaded from the registry yet");
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

    /// <summary>RFC 7638 JWK thumbprint of a P-256 public key.</summary>
    public static string Thumbprint(ECParameters publicKey) => KeyFiles.Thumbprint(publicKey);

    /// <summary>A new key of this ring's use as the store keeps it (sealed); it joins the ring on the next <see cref="ReloadAsync"/>.</summary>
    public StoredKey NewKey()
    {
        using var algorithm = CreateAlgorithm(generate: true);
        return Seal(algorithm, _timeProvider.GetUtcNow());
    }

    /// <summary>The stored form of a PKCS#8 PEM private key (a key file of an older server).</summary>
    public StoredKey SealPem(string pem, DateTimeOffset createdAt)
    {
        using var algorithm = CreateAlgorithm(generate: false);
        algorithm.ImportFromPem(pem);
        return Seal(algorithm, createdAt);
    }

    private StoredKey Seal(TAlgorithm algorithm, DateTimeOffset createdAt)
    {
        var keyId = Thumbprint(algorithm.ExportParameters(false));
        var privateKey = algorithm.ExportPkcs8PrivateKey();
        try
        {
            return new StoredKey(keyId, Use, createdAt, _kek.Seal(privateKey, keyId, Use), _kek.Id);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(privateKey);
        }
    }

    /// <summary>
    /// Re-reads the store and holds exactly its keys (a key already held is kept as it is; a key no longer stored is
    /// disposed). True when the set of key IDs changed. A row sealed under another KEK stops the reload with a
    /// <see cref="ServerStartException"/> naming both KEK IDs.
    /// </summary>
    public async Task<bool> ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _reload.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var rows = await _store.ListKeysAsync(Use, cancellationToken).ConfigureAwait(false);
            var held = All.ToDictionary(k => k.KeyId, StringComparer.Ordinal);
            var next = new List<TKey>(rows.Count);
            var opened = new List<TKey>();
            try
            {
                foreach (var row in rows)
                {
                    if (held.TryGetValue(row.KeyId, out var same))
                    {
                        next.Add(same);
                        continue;
                    }

                    var key = Open(row);
                    opened.Add(key);
                    next.Add(key);
                }
            }
            catch
            {
                foreach (var key in opened)
                {
                    key.Key.Dispose();
                }

                throw;
            }

            var changed = next.Count != held.Count || opened.Count > 0;
            lock (_lock)
            {
                _keys = next;
            }

            var kept = next.Select(k => k.KeyId).ToHashSet(StringComparer.Ordinal);
            foreach (var removed in held.Values.Where(k => !kept.Contains(k.KeyId)))
            {
                removed.Key.Dispose();
            }

            return changed;
        }
        finally
        {
            _reload.Release();
        }
    }

    public void Dispose()
    {
        foreach (var key in All)
        {
            key.Key.Dispose();
        }

        _reload.Dispose();
    }

    /// <summary>A new P-256 key when <paramref name="generate"/>, else an empty one to import into.</summary>
    protected abstract TAlgorithm CreateAlgorithm(bool generate);

    protected abstract TKey Wrap(string keyId, TAlgorithm key, DateTimeOffset createdAt);

    private TKey Open(StoredKey row)
    {
        if (row.KekId != _kek.Id)
        {
            throw new ServerStartException(
                ServerStartProblem.WrongKeyEncryptionKey,
                $"the registry's {KeyRows.KeyUseName(Use)} key {row.KeyId} is sealed under key-encryption key {row.KekId}, but this server was given key-encryption key {_kek.Id} ({_kek.Source}); give every instance the key-encryption key the registry was set up with");
        }

        var privateKey = _kek.Open(row.SealedPrivateKey, row.KeyId, Use);
        var algorithm = CreateAlgorithm(generate: false);
        try
        {
            algorithm.ImportPkcs8PrivateKey(privateKey, out _);
            var thumbprint = Thumbprint(algorithm.ExportParameters(false));
            if (thumbprint != row.KeyId)
            {
                throw new CryptographicException($"the stored key {row.KeyId} holds the key {thumbprint}");
            }

            return Wrap(row.KeyId, algorithm, row.CreatedAt);
        }
        catch
        {
            algorithm.Dispose();
            throw;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(privateKey);
        }
    }
}
