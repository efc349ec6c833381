using System.Security.Cryptography;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Enroll.Shared.Files;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Tokens;

/// <summary>
/// Moves the keys an older server kept as files (<c>{data}/keys/signing-*.pem</c>, <c>encryption-*.pem</c>,
/// <see cref="KeyFiles"/>) into the registry, oldest first, and the files to <c>{data}/keys/imported/</c> so they are
/// not imported again. A key ID already stored is skipped, so two instances importing the same files add each key once.
/// A key file other users can read is refused, as before.
/// </summary>
internal static class KeyFileImport
{
    public const string ImportedFolder = "imported";

    public static async Task<int> ImportAsync(string keysDirectory, SigningKeyRing signing, EncryptionKeyRing encryption, IKeyStore store, ILogger logger, CancellationToken cancellationToken = default)
    {
        if (!Directory.Exists(keysDirectory))
        {
            return 0;
        }

        var imported = 0;
        imported += await ImportAsync(keysDirectory, "signing-", signing, store, logger, cancellationToken).ConfigureAwait(false);
        imported += await ImportAsync(keysDirectory, "encryption-", encryption, store, logger, cancellationToken).ConfigureAwait(false);
        return imported;
    }

    private static async Task<int> ImportAsync<TAlgorithm, TKey>(string keysDirectory, string prefix, KeyRing<TAlgorithm, TKey> ring, IKeyStore store, ILogger logger, CancellationToken cancellationToken)
        where TAlgorithm : ECAlgorithm
        where TKey : RingKey<TAlgorithm>
    {
        var files = KeyFiles.Read(keysDirectory, prefix).ToList();
        if (files.Count == 0)
        {
            return 0;
        }

        var importedFolder = OwnerOnlyFiles.EnsureDirectory(Path.Combine(keysDirectory, ImportedFolder));
        var imported = 0;
        foreach (var (file, created, pem) in files)
        {
            var row = ring.SealPem(pem, created);
            var added = await store.AddKeyAsync(row, cancellationToken).ConfigureAwait(false);
            File.Move(file, Path.Combine(importedFolder, Path.GetFileName(file)), overwrite: true);
            if (added)
            {
                imported++;
                Log.KeyImported(logger, KeyRows.KeyUseName(ring.Use), row.KeyId, file, importedFolder);
            }
            else
            {
                Log.KeyAlreadyImported(logger, row.KeyId, file, importedFolder);
            }
        }

        return imported;
    }
}
