using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    private const string TokenColumns = "id, secret_hash, org_id, description, auto_approve, max_uses, uses, expires_at, registration_token_lifetime_s, created_at, revoked_at";

    public Task CreateProvisioningTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                $"INSERT INTO provisioning_tokens ({TokenColumns}) VALUES ($id, $hash, $org, $description, $auto, $max, 0, $expires, $lifetime, $created, NULL)",
                ("$id", token.Id),
                ("$hash", token.SecretHash),
                ("$org", token.OrgId),
                ("$description", token.Description),
                ("$auto", token.AutoApprove ? 1 : 0),
                ("$max", token.MaxUses),
                ("$expires", ToUnix(token.ExpiresAt)),
                ("$lifetime", token.RegistrationTokenLifetime is { } l ? (long)l.TotalSeconds : null),
                ("$created", ToUnix(token.CreatedAt))),
            cancellationToken);

    public Task<ProvisioningTokenRecord?> FindProvisioningTokenAsync(string id, CancellationToken cancellationToken = default) =>
        Task.FromResult(Query($"SELECT {TokenColumns} FROM provisioning_tokens WHERE id = $id", ReadToken, ("$id", id)).FirstOrDefault());

    public Task<IReadOnlyList<ProvisioningTokenRecord>> ListProvisioningTokensAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<ProvisioningTokenRecord>>(Query($"SELECT {TokenColumns} FROM provisioning_tokens ORDER BY created_at", ReadToken));

    public Task<bool> RevokeProvisioningTokenAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        _database.WriteAsync(
            context => context.Execute(
                "UPDATE provisioning_tokens SET revoked_at = COALESCE(revoked_at, $at) WHERE id = $id",
                ("$id", id),
                ("$at", ToUnix(at))) > 0,
            cancellationToken);
}
