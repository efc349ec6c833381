using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    public async Task<CredentialFailures> RecordCredentialFailureAsync(string key, int limit, TimeSpan window, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        // One statement: ON CONFLICT DO UPDATE locks the key's row, so failures recorded at once by any number of
        // instances each move the instant on from the one before (none is lost, no read-modify-write in between).
        (await ReadAsync(
            """
            INSERT INTO credential_failures (key, full_at) VALUES ($1, $2 + $3)
            ON CONFLICT (key) DO UPDATE SET full_at = GREATEST(credential_failures.full_at, $2) + $3
            RETURNING key, full_at
            """,
            CredentialFailures.Read,
            cancellationToken,
            key,
            ToUnix(at),
            CredentialFailures.PerTokenMilliseconds(limit, window)).ConfigureAwait(false)).Single();

    public async Task<CredentialFailures?> FindCredentialFailuresAsync(string key, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        (await ReadAsync(
            "SELECT key, full_at FROM credential_failures WHERE key = $1 AND full_at > $2",
            CredentialFailures.Read,
            cancellationToken,
            key,
            ToUnix(at)).ConfigureAwait(false)).FirstOrDefault();

    public async Task<IReadOnlyList<CredentialFailures>> ListCredentialFailuresAsync(string keyPrefix, DateTimeOffset at, int limit, CancellationToken cancellationToken = default) =>
        await ReadAsync(
            "SELECT key, full_at FROM credential_failures WHERE starts_with(key, $1) AND full_at > $2 ORDER BY full_at DESC LIMIT $3",
            CredentialFailures.Read,
            cancellationToken,
            keyPrefix,
            ToUnix(at),
            limit).ConfigureAwait(false);

    public Task<int> PurgeCredentialFailuresAsync(DateTimeOffset at, CancellationToken cancellationToken = default) =>
        WriteAsync("DELETE FROM credential_failures WHERE full_at <= $1", cancellationToken, ToUnix(at));
}
