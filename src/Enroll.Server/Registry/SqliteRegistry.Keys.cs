using Enroll.Shared.Storage;
using static Enroll.Server.Registry.KeyRows;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string KeyColumns = "key_id, use, created_at, sealed_key, kek_id";

    public Task<IReadOnlyList<StoredKey>> ListKeysAsync(KeyUse use, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<StoredKey>>(Query($"SELECT {KeyColumns} FROM server_keys WHERE use = $use ORDER BY seq", ReadKey, ("$use", KeyUseName(use))));

    public Task<bool> AddKeyAsync(StoredKey key, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(context => InsertKey(context, key), cancellationToken);

    public Task<int> RotateKeysAsync(IReadOnlyList<StoredKey> added, int keep, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(added);
        return _database.WriteAsync(
            context =>
            {
                foreach (var key in added)
                {
                    InsertKey(context, key);
                }

                var pruned = 0;
                foreach (var use in Enum.GetValues<KeyUse>())
                {
                    pruned += context.Execute(
                        "DELETE FROM server_keys WHERE use = $use AND seq NOT IN (SELECT seq FROM server_keys WHERE use = $use ORDER BY seq DESC LIMIT $keep)",
                        ("$use", KeyUseName(use)),
                        ("$keep", keep));
                }

                return pruned;
            },
            cancellationToken);
    }

    public Task<bool> CreateFirstKeysAsync(IReadOnlyList<StoredKey> first, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(first);

        // One writer: the check and the inserts share the write transaction, so no other write comes between them.
        return _database.WriteAsync(
            context =>
            {
                using (var reader = context.Command("SELECT 1 FROM server_keys LIMIT 1").ExecuteReader())
                {
                    if (reader.Read())
                    {
                        return false;
                    }
                }

                foreach (var key in first)
                {
                    InsertKey(context, key);
                }

                return true;
            },
            cancellationToken);
    }

    private static bool InsertKey(SqliteWriteContext context, StoredKey key) =>
        context.Execute(
            $"INSERT INTO server_keys ({KeyColumns}) VALUES ($id, $use, $created, $sealed, $kek) ON CONFLICT (key_id) DO NOTHING",
            ("$id", key.KeyId),
            ("$use", KeyUseName(key.Use)),
            ("$created", ToUnix(key.CreatedAt)),
            ("$sealed", key.SealedPrivateKey),
            ("$kek", key.KekId)) > 0;
}
