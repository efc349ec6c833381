using Enroll.Protocol;
using Enroll.Server.Registry;
using Enroll.Shared.Tokens;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;

namespace Enroll.Server.Tokens;

/// <summary>The outcome of checking a device's token against signature, claims and the registry.</summary>
internal sealed record DeviceTokenCheck(bool IsValid, string? Failure, TokenValidationOutcome? Token, DeviceRecord? Device)
{
    public static DeviceTokenCheck Refused(string reason, TokenValidationOutcome? token = null, DeviceRecord? device = null) => new(false, reason, token, device);
}

/// <summary>
/// Validates device tokens for the broker and the handlers: the shared <see cref="EnrollTokenValidator"/> (algorithm,
/// key ID, issuer, audience, type, lifetime), then revocation through the registry (device disabled, or token issued
/// before the device's tokens were revoked).
/// </summary>
internal sealed class DeviceTokenValidator
{
    private readonly EnrollTokenValidator _validator;
    private readonly SigningKeyRing _keys;
    private readonly PublishedKeys _published;
    private readonly IDeviceStore _registry;

    public DeviceTokenValidator(SigningKeyRing keys, PublishedKeys published, IDeviceStore registry, TimeProvider timeProvider, IOptions<EnrollServerOptions> options)
    {
        _keys = keys;
        _published = published;
        _registry = registry;
        _validator = new EnrollTokenValidator(timeProvider, options.Value.Issuer, options.Value.ClockSkew);
    }

    public Task<DeviceTokenCheck> ValidateAccessTokenAsync(string token, string? expectedDeviceId, CancellationToken cancellationToken = default) =>
        ValidateAsync(token, TokenTypes.Access, TokenAudiences.Broker, expectedDeviceId, cancellationToken);

    public Task<DeviceTokenCheck> ValidateRegistrationTokenAsync(string token, string? expectedDeviceId, CancellationToken cancellationToken = default) =>
        ValidateAsync(token, TokenTypes.Registration, TokenAudiences.Registration, expectedDeviceId, cancellationToken);

    private async Task<DeviceTokenCheck> ValidateAsync(string token, string type, string audience, string? expectedDeviceId, CancellationToken cancellationToken)
    {
        var outcome = await _validator.ValidateAsync(token, type, audience, _keys.VerificationKeys).ConfigureAwait(false);

        // A key this instance does not hold may be one another instance just rotated to: re-read the keys (at most once a
        // second) before refusing, rather than wait for the change notification. Valid tokens never take this path.
        if (!outcome.IsValid
            && KeyIdOf(token) is { } keyId
            && _keys.Find(keyId) is null
            && await _published.ReloadForUnknownKeyAsync(cancellationToken).ConfigureAwait(false)
            && _keys.Find(keyId) is not null)
        {
            outcome = await _validator.ValidateAsync(token, type, audience, _keys.VerificationKeys).ConfigureAwait(false);
        }
        if (!outcome.IsValid)
        {
            return DeviceTokenCheck.Refused(outcome.Failure!);
        }

        if (expectedDeviceId is not null && !string.Equals(outcome.Subject, expectedDeviceId, StringComparison.Ordinal))
        {
            return DeviceTokenCheck.Refused("token belongs to another device", outcome);
        }

        var device = await _registry.FindDeviceAsync(outcome.Subject!, cancellationToken).ConfigureAwait(false);
        if (device is null)
        {
            return DeviceTokenCheck.Refused("unknown device", outcome);
        }

        if (!device.IsActive)
        {
            return DeviceTokenCheck.Refused("device is revoked", outcome, device);
        }

        // Revocation moves tokens_valid_after to the next whole second; iat has second precision.
        if (device.TokensValidAfter is { } validAfter && outcome.IssuedAt < validAfter)
        {
            return DeviceTokenCheck.Refused("token is revoked", outcome, device);
        }

        return new DeviceTokenCheck(true, null, outcome, device);
    }

    /// <summary>The <c>kid</c> of a JWS's header, or null when the token is not a readable JWT (the validator refuses it).</summary>
    private static string? KeyIdOf(string token)
    {
        try
        {
            var kid = new JsonWebToken(token).Kid;
            return string.IsNullOrEmpty(kid) ? null : kid;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }
}
