using System.Security.Cryptography;
using System.Text;
using Enroll.Server.Registry;
using Enroll.Shared.Files;

namespace Enroll.Server.Tokens;

/// <summary>
/// The key-encryption key (KEK): 32 random bytes, written as base64, that every instance sharing a registry is given
/// (<see cref="EnrollServerOptions.KeyEncryptionKeyFile"/> or <see cref="Variable"/>). The server keys' private keys are
/// stored sealed under it with AES-256-GCM: a random 12-byte nonce, and associated data binding the key ID and use, so a
/// sealed key copied into another row does not open. Its <see cref="Id"/> (a short hash) is stored with every row, so a
/// server given another KEK says so instead of failing to decrypt. With SQLite and none given, the server makes one in
/// <c>{data}/keys/key-encryption.key</c> (0600) on its first start.
/// </summary>
internal sealed class KeyEncryptionKey
{
    /// <summary>The environment variable a KEK can be given in (base64 of 32 bytes).</summary>
    public const string Variable = "ENROLL_KEY_ENCRYPTION_KEY";

    /// <summary>The KEK file a single (SQLite) server creates in its <c>keys</c> folder when given none.</summary>
    public const string DefaultFileName = "key-encryption.key";

    /// <summary>How an operator makes a KEK, for the messages that ask for one.</summary>
    public const string HowToMake = "make one with: head -c 32 /dev/urandom | base64 > kek; chmod 600 kek";

    private const int KeyBytes = 32;
    private const int NonceBytes = 12;
    private const int TagBytes = 16;
    private const byte Version = 1;

    private readonly byte[] _key;

    private KeyEncryptionKey(byte[] key, string source, bool created)
    {
        _key = key;
        Source = source;
        Created = created;
        Id = IdOf(key);
    }

    /// <summary>A short, public name of the KEK: the first 8 bytes of SHA-256 over a label and the key, in hex.</summary>
    public string Id { get; }

    /// <summary>Where the KEK came from (a file path or the environment variable), for the log.</summary>
    public string Source { get; }

    /// <summary>True when this start created the KEK file.</summary>
    public bool Created { get; }

    /// <summary>A KEK from its base64 text (as in the file or variable); refused unless it is 32 bytes.</summary>
    public static KeyEncryptionKey Parse(string text, string source) => new(Decode(text, source), source, created: false);

    /// <summary>A new random KEK (for tests and the first start of a single server).</summary>
    public static KeyEncryptionKey Generate(string source = "generated") => new(RandomNumberGenerator.GetBytes(KeyBytes), source, created: true);

    /// <summary>A new KEK as its file text (base64 and a newline), as an operator would make it.</summary>
    public static string NewText() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(KeyBytes)) + "\n";

    /// <summary>
    /// The KEK the options give: <see cref="EnrollServerOptions.KeyEncryptionKeyFile"/> if set, else
    /// <paramref name="environmentValue"/> (the <see cref="Variable"/>); with neither, a PostgreSQL registry
    /// (<see cref="EnrollServerOptions.Database"/>) refuses to start — each instance would make its own — and SQLite uses
    /// (creating once) <c>{data}/keys/key-encryption.key</c>.
    /// </summary>
    public static KeyEncryptionKey Load(EnrollServerOptions options, string dataDirectory, string? environmentValue)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.KeyEncryptionKeyFile is { } file)
        {
            var path = Path.GetFullPath(file);
            if (!File.Exists(path))
            {
                throw new ServerStartException(ServerStartProblem.KeyEncryptionKeyInvalid, $"the key-encryption key file {path} (--key-encryption-key-file) does not exist; {HowToMake}");
            }

            return FromFile(path, created: false);
        }

        if (!string.IsNullOrWhiteSpace(environmentValue))
        {
            return Parse(environmentValue, Variable);
        }

        if (options.Database is not null)
        {
            throw new ServerStartException(
                ServerStartProblem.KeyEncryptionKeyRequired,
                $"a server on a shared PostgreSQL database needs the key-encryption key every instance shares: give it with --key-encryption-key-file PATH or {Variable}; {HowToMake}");
        }

        var keys = OwnerOnlyFiles.EnsureDirectory(Path.Combine(dataDirectory, "keys"));
        var own = Path.Combine(keys, DefaultFileName);
        if (File.Exists(own))
        {
            return FromFile(own, created: false);
        }

        OwnerOnlyFiles.WriteAllText(own, NewText());
        return FromFile(own, created: true);
    }

    /// <summary>Seals a PKCS#8 private key: version byte, nonce, ciphertext, tag.</summary>
    public byte[] Seal(ReadOnlySpan<byte> privateKey, string keyId, KeyUse use)
    {
        var sealedKey = new byte[1 + NonceBytes + privateKey.Length + TagBytes];
        sealedKey[0] = Version;
        var nonce = sealedKey.AsSpan(1, NonceBytes);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key, TagBytes);
        aes.Encrypt(nonce, privateKey, sealedKey.AsSpan(1 + NonceBytes, privateKey.Length), sealedKey.AsSpan(1 + NonceBytes + privateKey.Length), AssociatedData(keyId, use));
        return sealedKey;
    }

    /// <summary>Opens what <see cref="Seal"/> made for the same key ID and use; throws <see cref="CryptographicException"/> otherwise.</summary>
    public byte[] Open(ReadOnlySpan<byte> sealedKey, string keyId, KeyUse use)
    {
        if (sealedKey.Length < 1 + NonceBytes + TagBytes || sealedKey[0] != Version)
        {
            throw new CryptographicException($"the sealed private key of {keyId} is not in a format this server knows");
        }

        var length = sealedKey.Length - 1 - NonceBytes - TagBytes;
        var privateKey = new byte[length];
        using var aes = new AesGcm(_key, TagBytes);
        aes.Decrypt(sealedKey.Slice(1, NonceBytes), sealedKey.Slice(1 + NonceBytes, length), sealedKey[^TagBytes..], privateKey, AssociatedData(keyId, use));
        return privateKey;
    }

    private static KeyEncryptionKey FromFile(string path, bool created)
    {
        if (OwnerOnlyFiles.IsAccessibleByOthers(path))
        {
            throw new InvalidOperationException($"The key-encryption key {path} can be read by other users. Restrict it (chmod 600 '{path}') before starting the server.");
        }

        return new KeyEncryptionKey(Decode(File.ReadAllText(path), path), path, created);
    }

    private static byte[] Decode(string text, string source)
    {
        byte[] key;
        try
        {
            key = Convert.FromBase64String(text.Trim());
        }
        catch (FormatException)
        {
            throw new ServerStartException(ServerStartProblem.KeyEncryptionKeyInvalid, $"the key-encryption key in {source} is not base64; {HowToMake}");
        }

        if (key.Length != KeyBytes)
        {
            throw new ServerStartException(ServerStartProblem.KeyEncryptionKeyInvalid, $"the key-encryption key in {source} is {key.Length} bytes, not {KeyBytes}; {HowToMake}");
        }

        return key;
    }

    private static string IdOf(byte[] key)
    {
        var label = "enroll key-encryption key id\0"u8;
        var input = new byte[label.Length + key.Length];
        label.CopyTo(input);
        key.CopyTo(input, label.Length);
        return Convert.ToHexStringLower(SHA256.HashData(input).AsSpan(0, 8));
    }

    private static byte[] AssociatedData(string keyId, KeyUse use) =>
        Encoding.UTF8.GetBytes($"enroll server key v1\0{KeyRows.KeyUseName(use)}\0{keyId}");
}
