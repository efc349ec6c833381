using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    public Task<CredentialFailures> RecordCredentialFailureAsync(string key, int limit, TimeSpan window, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        // One statement on the single writer: the bucket arithmetic is the database's, as in PostgresRegistry.
        _database.WriteAsync(
            context =>
            {
                using var reader = context.Command(
                    """
                    INSERT INTO credential_failures (key, full_at) VALUES ($key, $at + $cost)
                    ON CONFLICT (key) DO UPDATE SET full_at = MAX(credential_failures.full_at, $at) + $cost
                    RETURNING full_at
                    """,
                    ("$key", key),
                    ("$at", ToUnix(at)),
                    ("$cost", CredentialFailures.PerTokenMilliseconds(limit, window))).ExecuteReader();
                reader.Read();
                return new CredentialFailures(key, FromUnix(reader.GetInt64(0)));
            },
            isolated: false,
            cancellationToken);

    public Task<CredentialFailures?> FindCredentialFailuresAsync(string key, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query(
            "SELECT key, full_at FROM credential_failures WHERE key = $key AND full_at > $at",
            CredentialFailures.Read,
            ("$key", key),
            ("$at", ToUnix(at))).FirstOrDefault());

    public Task<IReadOnlyList<CredentialFailures>> ListCredentialFailuresAsync(string keyPrefix, DateTimeOffset at, int limit, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<CredentialFailures>>(Query(
            "SELECT key, full_at FROM credential_failures WHERE substr(key, 1, length($prefix)) = $prefix AND full_at > $at ORDER BY full_at DESC LIMIT $limit",
            CredentialFailures.Read,
            ("$prefix", keyPrefix),
            ("$at", ToUnix(at)),
            ("$limit", limit)));

    public Task<int> PurgeCredentialFailuresAsync(DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute("DELETE FROM credential_failures WHERE full_at <= $at", ("$at", ToUnix(at))),
            isolated: false,
            cancellationToken);
}
