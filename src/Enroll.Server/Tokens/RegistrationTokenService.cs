using Enroll.Protocol;
using Enroll.Server.Diagnostics;
using Enroll.Server.Domain;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Tokens;

/// <summary>A device authenticated by its Registration Token.</summary>
internal sealed record RegistrationTokenHolder(DeviceRecord Device, string TokenId, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt, RegistrationTokenUse Use)
{
    public TimeSpan Lifetime => ExpiresAt - IssuedAt;
}

/// <summary>
/// Issues Registration Tokens and checks their use against the ledger: a token refreshed away may be used once more
/// within <see cref="EnrollServerOptions.RefreshGrace"/>; any use after that revokes the device's tokens and is logged as
/// suspicious.
/// </summary>
internal sealed class RegistrationTokenService
{
    private readonly IDeviceStore _registry;
    private readonly TokenIssuer _issuer;
    private readonly DeviceTokenValidator _validator;
    private readonly TimeProvider _timeProvider;
    private readonly EnrollServerOptions _options;
    private readonly ILogger<RegistrationTokenService> _logger;
    private readonly Security.FailureRateLimiter _limiter;
    private readonly IBrokerCredentials _brokerCredentials;
    private readonly Refusals.RefusalLog _refusals;

    public RegistrationTokenService(IDeviceStore registry, TokenIssuer issuer, DeviceTokenValidator validator, Security.FailureRateLimiter limiter, TimeProvider timeProvider, IOptions<EnrollServerOptions> options, ILogger<RegistrationTokenService> logger, IBrokerCredentials brokerCredentials, Refusals.RefusalLog refusals)
    {
        _refusals = refusals;
        _brokerCredentials = brokerCredentials;
        _limiter = limiter;
        _registry = registry;
        _issuer = issuer;
        _validator = validator;
        _timeProvider = timeProvider;
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>Issues the successor of <paramref name="holder"/>'s token, with the same lifetime.</summary>
    public async Task<IssuedToken> RefreshAsync(RegistrationTokenHolder holder, CancellationToken cancellationToken)
    {
        var token = _issuer.IssueRegistrationToken(holder.Device, holder.Lifetime);
        var record = ToRecord(holder.Device.DeviceId, token);
        if (holder.Use == RegistrationTokenUse.GraceUse)
        {
            // The device lost the first answer; its successor stays valid too.
            await _registry.RecordRegistrationTokenAsync(record, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await _registry.ReplaceRegistrationTokenAsync(holder.TokenId, record, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        }

        return token;
    }

    /// <summary>Validates the token and its ledger entry; throws <see cref="RejectedException"/> when refused.</summary>
    public async Task<RegistrationTokenHolder> AuthenticateAsync(string token, string? deviceId, string clientId, string? source, CancellationToken cancellationToken)
    {
        if (await _limiter.ReserveAsync(clientId, source, cancellationToken).ConfigureAwait(false) is { } retryAfter)
        {
            throw RejectedException.RateLimited(retryAfter);
        }

        DeviceTokenCheck check;
        try
        {
            check = await _validator.ValidateRegistrationTokenAsync(token, deviceId, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _limiter.Refund(clientId, source);
            throw;
        }

        if (!check.IsValid)
        {
            await _limiter.FailedAsync(clientId, source, CancellationToken.None).ConfigureAwait(false);
            _refusals.Record(Refusals.RefusalLog.CredentialRefused, $"registration token: {check.Failure}", clientId);
            throw new RejectedException(ErrorCodes.Unauthorized, $"registration token refused: {check.Failure}");
        }

        _limiter.Refund(clientId, source);

        var device = check.Device!;
        if (!string.Equals(device.ClientId, clientId, StringComparison.Ordinal))
        {
            throw new RejectedException(ErrorCodes.Forbidden, "the registration token belongs to another client");
        }

        var tokenId = check.Token!.TokenId!;
        var use = await _registry.UseRegistrationTokenAsync(tokenId, device.DeviceId, _timeProvider.GetUtcNow(), _options.RefreshGrace, cancellationToken).ConfigureAwait(false);
        switch (use)
        {
            case RegistrationTokenUse.Unknown:
                _refusals.Record(Refusals.RefusalLog.CredentialRefused, "registration token: unknown", clientId);
                throw new RejectedException(ErrorCodes.Unauthorized, "registration token refused: unknown token");
            case RegistrationTokenUse.Reused:
                Log.RegistrationTokenReused(_logger, device.DeviceId, clientId);
                _refusals.Record(Refusals.RefusalLog.CredentialRefused, "registration token: reused", device.DeviceId);
                await _brokerCredentials.DeviceTokensRevokedAsync(device.DeviceId, cancellationToken).ConfigureAwait(false);
                throw new RejectedException(ErrorCodes.Unauthorized, "registration token refused: it was already refreshed; the device's tokens are revoked");
        }

        return new RegistrationTokenHolder(device, tokenId, check.Token.IssuedAt, check.Token.ExpiresAt, use);
    }

    /// <summary>True when less than 20 % of the token's lifetime remains: the device should refresh now.</summary>
    public bool IsExpiring(RegistrationTokenHolder holder) =>
        holder.ExpiresAt - _timeProvider.GetUtcNow() < holder.Lifetime * 0.2;

    /// <summary>
    /// Signs a Registration Token for <paramref name="subject"/> before its registration is committed: the registry
    /// records <see cref="RegistrationTokenRecord"/> with the device, or reports the registration stale (sign again).
    /// </summary>
    public (IssuedToken Token, RegistrationTokenRecord Record) IssueForRegistration(TokenSubject subject, TimeSpan? lifetime)
    {
        var token = _issuer.IssueRegistrationToken(subject, lifetime);
        return (token, ToRecord(subject.DeviceId, token));
    }

    internal static RegistrationTokenRecord ToRecord(string deviceId, IssuedToken token) => new()
    {
        TokenId = token.TokenId,
        DeviceId = deviceId,
        IssuedAt = token.IssuedAt,
        ExpiresAt = token.ExpiresAt,
    };
}
