namespace Enroll.Server.Registry;

/// <summary>What a server key is for.</summary>
internal enum KeyUse
{
    /// <summary>An ES256 key that signs tokens.</summary>
    Signing,

    /// <summary>A P-256 ECDH key devices encrypt requests to.</summary>
    Encryption,
}

/// <summary>
/// One server key as stored: its RFC 7638 thumbprint, its use, when it was made, its PKCS#8 private key sealed under the
/// key-encryption key (<see cref="Tokens.KeyEncryptionKey"/>) and that key's ID. The store never sees a private key in clear.
/// </summary>
internal sealed record StoredKey(string KeyId, KeyUse Use, DateTimeOffset CreatedAt, byte[] SealedPrivateKey, string KekId);

/// <summary>
/// The server's signing and encryption keys, shared by every instance on the database. Keys of a use are listed oldest
/// first, in the order they were added (the last is the current key). A key ID is stored once: adding a key whose ID is
/// present changes nothing.
/// </summary>
internal interface IKeyStore
{
    /// <summary>The keys of <paramref name="use"/>, oldest first.</summary>
    Task<IReadOnlyList<StoredKey>> ListKeysAsync(KeyUse use, CancellationToken cancellationToken = default);

    /// <summary>Adds <paramref name="key"/>; false (and nothing changes) when its key ID is already stored.</summary>
    Task<bool> AddKeyAsync(StoredKey key, CancellationToken cancellationToken = default);

    /// <summary>
    /// In one transaction: adds <paramref name="added"/> (each becomes the current key of its use) and deletes, for every
    /// use, the keys older than the newest <paramref name="keep"/>. Returns how many were deleted.
    /// </summary>
    Task<int> RotateKeysAsync(IReadOnlyList<StoredKey> added, int keep, CancellationToken cancellationToken = default);

    /// <summary>
    /// Adds <paramref name="first"/> when the store holds no key at all, else nothing; true when it added them. Safe when
    /// several instances start together on an empty database: exactly one set is added.
    /// </summary>
    Task<bool> CreateFirstKeysAsync(IReadOnlyList<StoredKey> first, CancellationToken cancellationToken = default);
}
