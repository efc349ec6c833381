using Enroll.Protocol.Messages;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Tokens;

/// <summary>
/// The server's public key set (JWKS): signing keys (<c>use: sig</c>, ES256) and encryption keys (<c>use: enc</c>,
/// ECDH-ES), newest first. Served at <c>/.well-known/jwks.json</c> and retained on <c>enroll/v1/server/keys</c>. The keys
/// live in the registry, shared by every instance on it: this class loads them at start (<see cref="LoadAsync"/>),
/// rotates them through the store and tells the other instances (<see cref="IRegistryChanges"/>, kind
/// <see cref="RegistryChange.Keys"/>), and reloads when another instance announces a rotation or when a token names a key
/// this instance does not hold (<see cref="ReloadForUnknownKeyAsync"/>).
/// </summary>
internal sealed class PublishedKeys(
    SigningKeyRing signing,
    EncryptionKeyRing encryption,
    IKeyStore store,
    IRegistryChanges changes,
    TimeProvider timeProvider,
    ILogger<PublishedKeys> logger) : IDisposable
{
    /// <summary>How often, at most, a token signed by an unknown key makes the server re-read its keys.</summary>
    public static readonly TimeSpan UnknownKeyReloadInterval = TimeSpan.FromSeconds(1);

    private readonly Lock _unknownLock = new();
    private DateTimeOffset _lastUnknownReload = DateTimeOffset.MinValue;
    private IDisposable? _observation;

    /// <summary>Raised after a rotation or a reload that changed the keys, so the retained key set can be republished.</summary>
    public event Action? Changed;

    /// <summary>True when this start created the registry's first keys.</summary>
    public bool Created { get; private set; }

    public ServerKeySet KeySet => new([.. signing.KeySet.Keys, .. encryption.PublicKeys()]);

    /// <summary>
    /// Imports the key files an older server left in <paramref name="keysDirectory"/> (<see cref="KeyFileImport"/>),
    /// creates the first keys when the registry has none (one instance does, when several start together), loads both
    /// rings and starts following the change feed.
    /// </summary>
    public async Task LoadAsync(string keysDirectory, CancellationToken cancellationToken = default)
    {
        await KeyFileImport.ImportAsync(keysDirectory, signing, encryption, store, logger, cancellationToken).ConfigureAwait(false);
        var first = new[] { signing.NewKey(), encryption.NewKey() };
        if (await store.CreateFirstKeysAsync(first, cancellationToken).ConfigureAwait(false))
        {
            Created = true;
            Log.FirstKeysCreated(logger, first[0].KeyId, first[1].KeyId);
        }

        // Follow the feed before the first read, so a rotation another instance makes from now on is not missed.
        _observation ??= changes.Observe(OnChangeAsync);
        await signing.ReloadAsync(cancellationToken).ConfigureAwait(false);
        await encryption.ReloadAsync(cancellationToken).ConfigureAwait(false);
        if (signing.All.Count == 0 || encryption.All.Count == 0)
        {
            // Keys of one use only (a half-imported folder): give the other use its first key.
            await store.RotateKeysAsync([.. signing.All.Count == 0 ? [signing.NewKey()] : Array.Empty<StoredKey>(), .. encryption.All.Count == 0 ? [encryption.NewKey()] : Array.Empty<StoredKey>()], int.MaxValue, cancellationToken).ConfigureAwait(false);
            await ReloadAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Makes new signing and encryption keys current and drops keys beyond <see cref="SigningKeyRing.KeysKept"/>, in one
    /// transaction of the store; then reloads and tells the other instances.
    /// </summary>
    public async Task<(string SigningKeyId, string EncryptionKeyId, int Pruned)> RotateAsync(CancellationToken cancellationToken = default)
    {
        var signingKey = signing.NewKey();
        var encryptionKey = encryption.NewKey();
        var pruned = await store.RotateKeysAsync([signingKey, encryptionKey], SigningKeyRing.KeysKept, cancellationToken).ConfigureAwait(false);
        await ReloadAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await changes.AnnounceAsync(new RegistryChange(RegistryChange.Keys), cancellationToken).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the rotation is committed; other instances also reload on an unknown key ID or when their feed reconnects
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.KeysReloadFailed(logger, "could not announce the rotation: " + ex.Message);
        }

        return (signingKey.KeyId, encryptionKey.KeyId, pruned);
    }

    /// <summary>Re-reads both rings from the store; raises <see cref="Changed"/> when either changed. True when one did.</summary>
    public async Task<bool> ReloadAsync(CancellationToken cancellationToken = default)
    {
        var changed = await signing.ReloadAsync(cancellationToken).ConfigureAwait(false);
        changed |= await encryption.ReloadAsync(cancellationToken).ConfigureAwait(false);
        if (changed)
        {
            Log.KeysReloaded(logger, signing.All.Count, encryption.All.Count, signing.Current.KeyId);
            Changed?.Invoke();
        }

        return changed;
    }

    /// <summary>
    /// Reloads because a token named a key this instance does not hold (another instance may have rotated and its
    /// notification not arrived yet) — at most once per <see cref="UnknownKeyReloadInterval"/>, so tokens with made-up key
    /// IDs cannot make every request read the store. True when it reloaded and the keys changed.
    /// </summary>
    public async Task<bool> ReloadForUnknownKeyAsync(CancellationToken cancellationToken = default)
    {
        var now = timeProvider.GetUtcNow();
        lock (_unknownLock)
        {
            if (now - _lastUnknownReload < UnknownKeyReloadInterval)
            {
                return false;
            }

            _lastUnknownReload = now;
        }

        return await ReloadAsync(cancellationToken).ConfigureAwait(false);
    }

    public void Dispose() => _observation?.Dispose();

    private async Task OnChangeAsync(RegistryChange change)
    {
        if (!change.Concerns(RegistryChange.Keys))
        {
            return;
        }

        try
        {
            await ReloadAsync().ConfigureAwait(false);
        }
#pragma warning disable CA1031 // a failed reload keeps the keys held; the next change, reconnect or unknown key ID tries again
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.KeysReloadFailed(logger, ex.Message);
        }
    }
}
