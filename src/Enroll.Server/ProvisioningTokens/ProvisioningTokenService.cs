using System.Security.Cryptography;
using System.Text;
using Enroll.Server.Domain;
using Enroll.Server.Registry;
using Enroll.Server.Security;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.ProvisioningTokens;

/// <summary>Why a Provisioning Token was refused.</summary>
internal enum ProvisioningTokenCheck
{
    Valid,
    Unknown,
    Revoked,
    Expired,
    UsedUp,
}

/// <summary>What creating a token produced: the record and the secret, shown once.</summary>
internal sealed record CreatedProvisioningToken(ProvisioningTokenRecord Record, string Secret);

/// <summary>
/// Provisioning Tokens look like <c>ept_{id}.{secret}</c>: the public ID finds the record, and the secret is compared
/// in constant time against its stored SHA-256 hash. The secret itself is never stored.
/// </summary>
internal sealed class ProvisioningTokenService
{
    public const string Prefix = "ept_";
    private const string IdAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";
    private readonly IProvisioningTokenStore _registry;
    private readonly TimeProvider _timeProvider;
    private readonly FailureRateLimiter _limiter;
    private readonly Refusals.RefusalLog _refusals;

    public ProvisioningTokenService(IProvisioningTokenStore registry, TimeProvider timeProvider, FailureRateLimiter limiter, Refusals.RefusalLog refusals)
    {
        _refusals = refusals;
        _registry = registry;
        _timeProvider = timeProvider;
        _limiter = limiter;
    }

    /// <summary>
    /// <see cref="VerifyAsync"/> behind the failure rate limit: a client or source that failed too often is answered
    /// <c>rate_limited</c> before any lookup, and every refused token counts against both.
    /// </summary>
    public async Task<(ProvisioningTokenCheck Check, ProvisioningTokenRecord? Record)> VerifyLimitedAsync(string presented, string clientId, string? source, CancellationToken cancellationToken)
    {
        if (await _limiter.ReserveAsync(clientId, source, cancellationToken).ConfigureAwait(false) is { } retryAfter)
        {
            throw RejectedException.RateLimited(retryAfter);
        }

        (ProvisioningTokenCheck Check, ProvisioningTokenRecord? Record) result;
        try
        {
            result = await VerifyAsync(presented, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _limiter.Refund(clientId, source);
            throw;
        }

        if (result.Check != ProvisioningTokenCheck.Valid)
        {
            _refusals.Record(Refusals.RefusalLog.TokenRefused, $"provisioning token: {result.Check.ToString().ToLowerInvariant()}", clientId);
        }

        if (result.Check is ProvisioningTokenCheck.Unknown or ProvisioningTokenCheck.Revoked or ProvisioningTokenCheck.Expired)
        {
            await _limiter.FailedAsync(clientId, source, CancellationToken.None).ConfigureAwait(false);
        }
        else
        {
            _limiter.Refund(clientId, source);
        }

        return result;
    }

    public async Task<CreatedProvisioningToken> CreateAsync(
        string orgId,
        bool autoApprove,
        DateTimeOffset? expiresAt,
        int? maxUses,
        string? description,
        TimeSpan? registrationTokenLifetime,
        CancellationToken cancellationToken)
    {
        var id = NewId();
        var secret = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        var record = new ProvisioningTokenRecord
        {
            Id = id,
            SecretHash = Hash(secret),
            OrgId = orgId,
            Description = description,
            AutoApprove = autoApprove,
            MaxUses = maxUses,
            ExpiresAt = expiresAt,
            RegistrationTokenLifetime = registrationTokenLifetime,
            CreatedAt = _timeProvider.GetUtcNow(),
        };
        await _registry.CreateProvisioningTokenAsync(record, cancellationToken).ConfigureAwait(false);
        return new CreatedProvisioningToken(record, $"{Prefix}{id}.{secret}");
    }

    /// <summary>Checks a presented token. The record is returned whenever the secret matched.</summary>
    public async Task<(ProvisioningTokenCheck Check, ProvisioningTokenRecord? Record)> VerifyAsync(string presented, CancellationToken cancellationToken)
    {
        if (!TryParse(presented, out var id, out var secret))
        {
            return (ProvisioningTokenCheck.Unknown, null);
        }

        var record = await _registry.FindProvisioningTokenAsync(id, cancellationToken).ConfigureAwait(false);
        // Hash even when the ID is unknown so both paths cost the same.
        var presentedHash = Hash(secret);
        if (record is null || !CryptographicOperations.FixedTimeEquals(presentedHash, record.SecretHash))
        {
            return (ProvisioningTokenCheck.Unknown, null);
        }

        if (record.RevokedAt is not null)
        {
            return (ProvisioningTokenCheck.Revoked, record);
        }

        if (record.ExpiresAt is { } expires && expires <= _timeProvider.GetUtcNow())
        {
            return (ProvisioningTokenCheck.Expired, record);
        }

        if (record.MaxUses is { } max && record.Uses >= max)
        {
            return (ProvisioningTokenCheck.UsedUp, record);
        }

        return (ProvisioningTokenCheck.Valid, record);
    }

    internal static bool TryParse(string presented, out string id, out string secret)
    {
        id = string.Empty;
        secret = string.Empty;
        if (presented is null || presented.Length > 256 || !presented.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var dot = presented.IndexOf('.', Prefix.Length);
        if (dot <= Prefix.Length || dot == presented.Length - 1)
        {
            return false;
        }

        id = presented[Prefix.Length..dot];
        secret = presented[(dot + 1)..];
        return true;
    }

    private static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));

    private static string NewId()
    {
        Span<byte> bytes = stackalloc byte[12];
        RandomNumberGenerator.Fill(bytes);
        var chars = new char[12];
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = IdAlphabet[bytes[i] & 31];
        }

        return new string(chars);
    }
}
