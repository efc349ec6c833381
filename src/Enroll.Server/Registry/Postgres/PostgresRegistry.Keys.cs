using Npgsql;
using static Enroll.Server.Registry.KeyRows;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private const string KeyColumns = "key_id, use, created_at, sealed_key, kek_id";

    /// <summary>The transaction-level advisory lock that makes "create the first keys" one instance's work.</summary>
    private const long FirstKeysLock = 0x656e726f6c6c6b;

    public async Task<IReadOnlyList<StoredKey>> ListKeysAsync(KeyUse use, CancellationToken cancellationToken = default) =>
        await ReadAsync($"SELECT {KeyColumns} FROM server_keys WHERE use = $1 ORDER BY seq", ReadKey, cancellationToken, KeyUseName(use)).ConfigureAwait(false);

    public async Task<bool> AddKeyAsync(StoredKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await InsertKeyAsync(connection, null, key, cancellationToken).ConfigureAwait(false);
    }

    public Task<int> RotateKeysAsync(IReadOnlyList<StoredKey> added, int keep, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(added);
        return TransactAsync<int>(
            async (connection, transaction) =>
            {
                foreach (var key in added)
                {
                    await InsertKeyAsync(connection, transaction, key, cancellationToken).ConfigureAwait(false);
                }

                var pruned = 0;
                foreach (var use in Enum.GetValues<KeyUse>())
                {
                    pruned += await ExecuteAsync(
                        connection,
                        transaction,
                        "DELETE FROM server_keys WHERE use = $1 AND seq NOT IN (SELECT seq FROM server_keys WHERE use = $1 ORDER BY seq DESC LIMIT $2)",
                        cancellationToken,
                        KeyUseName(use),
                        keep).ConfigureAwait(false);
                }

                return (pruned, End.Commit);
            },
            cancellationToken);
    }

    public Task<bool> CreateFirstKeysAsync(IReadOnlyList<StoredKey> first, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(first);
        return TransactAsync<bool>(
            async (connection, transaction) =>
            {
                // Instances starting together queue here; the first to hold the lock adds the keys, the others then see them.
                await ExecuteAsync(connection, transaction, "SELECT pg_advisory_xact_lock($1)", cancellationToken, FirstKeysLock).ConfigureAwait(false);
                var any = await QueryAsync(connection, transaction, "SELECT 1 FROM server_keys LIMIT 1", r => r.GetInt32(0), cancellationToken).ConfigureAwait(false);
                if (any.Count > 0)
                {
                    return (false, End.Rollback);
                }

                foreach (var key in first)
                {
                    await InsertKeyAsync(connection, transaction, key, cancellationToken).ConfigureAwait(false);
                }

                return (true, End.Commit);
            },
            cancellationToken);
    }

    private static async Task<bool> InsertKeyAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, StoredKey key, CancellationToken cancellationToken) =>
        await ExecuteAsync(
            connection,
            transaction,
            $"INSERT INTO server_keys ({KeyColumns}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
            cancellationToken,
            key.KeyId,
            KeyUseName(key.Use),
            ToUnix(key.CreatedAt),
            key.SealedPrivateKey,
            key.KekId).ConfigureAwait(false) > 0;
}
