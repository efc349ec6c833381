using Npgsql;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class PostgresRegistry
{
    private const string TokenColumns = "id, secret_hash, org_id, description, auto_approve, max_uses, uses, expires_at, registration_token_lifetime_s, created_at, revoked_at";

    public Task CreateProvisioningTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default) =>
        WriteAsync(
            $"INSERT INTO provisioning_tokens ({TokenColumns}) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, NULL)",
            cancellationToken,
            token.Id,
            token.SecretHash,
            token.OrgId,
            token.Description,
            token.AutoApprove,
            token.MaxUses,
            ToUnix(token.ExpiresAt),
            token.RegistrationTokenLifetime is { } l ? (long)l.TotalSeconds : null,
            ToUnix(token.CreatedAt));

    public async Task<ProvisioningTokenRecord?> FindProvisioningTokenAsync(string id, CancellationToken cancellationToken = default) =>
        (await ReadAsync($"SELECT {TokenColumns} FROM provisioning_tokens WHERE id = $1", ReadToken, cancellationToken, id).ConfigureAwait(false)).FirstOrDefault();

    public async Task<IReadOnlyList<ProvisioningTokenRecord>> ListProvisioningTokensAsync(CancellationToken cancellationToken = default) =>
        await ReadAsync($"SELECT {TokenColumns} FROM provisioning_tokens ORDER BY created_at, id", ReadToken, cancellationToken).ConfigureAwait(false);

    public async Task<bool> RevokeProvisioningTokenAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        await WriteAsync("UPDATE provisioning_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1", cancellationToken, id, ToUnix(at)).ConfigureAwait(false) > 0;

    /// <summary>Counts one use of the token unless that would pass its max uses; false when it would (the row is locked until commit).</summary>
    private static async Task<bool> CountUseAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tokenId, CancellationToken cancellationToken) =>
        await ExecuteAsync(connection, transaction, "UPDATE provisioning_tokens SET uses = uses + 1 WHERE id = $1 AND (max_uses IS NULL OR uses < max_uses)", cancellationToken, tokenId).ConfigureAwait(false) > 0;
}
