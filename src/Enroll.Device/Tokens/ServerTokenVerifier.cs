using System.Text;
using System.Text.Json;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Protocol;
using Enroll.Protocol.Json;
using Enroll.Protocol.Topics;
using Enroll.Shared.Tokens;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Device.Tokens;

/// <summary>A token the device accepted: its expiry and issue time.</summary>
internal readonly record struct VerifiedToken(DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt, string? OrgId);

/// <summary>
/// Checks the tokens the server hands out (SPEC §2.1 step 5) with the server's published keys: from
/// <see cref="EnrollDeviceOptions.ServerKeysPath"/> when pinned, else from the retained <c>enroll/v1/server/keys</c>
/// message, fetched again when a token names a key the device has not seen (key rotation).
/// <para>
/// Signature, issuer, audience, type and subject are checked strictly. The lifetime (<c>nbf</c>, <c>iat</c>, <c>exp</c>)
/// is checked against <see cref="Clock"/>, the server's clock: each token's <c>iat</c> against the local time at receipt
/// measures how far the device's clock is off, and an offset beyond <see cref="EnrollDeviceOptions.ClockSkew"/> is
/// applied (a token that fails validation leaves the previous offset in place).
/// </para>
/// </summary>
internal sealed class ServerTokenVerifier
{
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly EnrollTokenValidator _validator;
    private readonly ServerClock _clock;
    private IReadOnlyList<SecurityKey> _keys = [];
    private (string KeyId, System.Security.Cryptography.ECDiffieHellman Key)? _encryptionKey;
    private string? _keysJson;
    private IDeviceConnection? _listeningTo;

    public ServerTokenVerifier(IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<ServerTokenVerifier> logger)
    {
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _clock = timeProvider as ServerClock ?? new ServerClock(timeProvider);
        _validator = new EnrollTokenValidator(_clock, _options.Issuer, _options.ClockSkew);
        if (_options.ServerKeysPath is { } path)
        {
            UseKeys(File.ReadAllText(path));
        }
    }

    /// <summary>The server's clock as measured from the tokens verified so far.</summary>
    public ServerClock Clock => _clock;

    /// <summary>The JWKS the verifier trusts now, to persist with the credentials.</summary>
    public string? TrustedKeysJson => _keysJson;

    /// <summary>True while the device checks tokens with the published key set and has none yet.</summary>
    public bool WantsPublishedKeys => _options.ValidateServerTokens && _options.ServerKeysPath is null && _keys.Count == 0;

    /// <summary>
    /// Takes every key set that arrives on <paramref name="connection"/> (the retained message that follows a subscription
    /// to the key topic, and later rotations while subscribed), so a token can be checked without asking for the keys.
    /// </summary>
    public void Listen(IDeviceConnection connection)
    {
        if (Interlocked.CompareExchange(ref _listeningTo, connection, null) is null)
        {
            connection.MessageReceived += OnPublishedKeysAsync;
        }
    }

    private Task OnPublishedKeysAsync(IncomingMessage message)
    {
        if (message.Topic != EnrollTopics.ServerKeys || _options.ServerKeysPath is not null)
        {
            return Task.CompletedTask;
        }

        var json = Encoding.UTF8.GetString(message.Payload.Span);
        if (json == _keysJson)
        {
            return Task.CompletedTask;
        }

        try
        {
            UseKeys(json);
            Log.ServerKeysFetched(_logger, _keys.Count, EnrollTopics.ServerKeys);
        }
        catch (EnrollProtocolException ex)
        {
            // Keep the keys held so far; a token they cannot check makes the device fetch the set again.
            Log.ServerKeysUnreadable(_logger, EnrollTopics.ServerKeys, ex.Message);
        }

        return Task.CompletedTask;
    }

    /// <summary>Starts from keys stored with the credentials (ignored when keys are pinned by file).</summary>
    public void Seed(string? keysJson)
    {
        if (_options.ServerKeysPath is null && keysJson is not null && _keysJson is null)
        {
            UseKeys(keysJson);
        }
    }

    public Task<VerifiedToken> VerifyAccessTokenAsync(IDeviceConnection connection, string token, string deviceId, CancellationToken cancellationToken) =>
        VerifyAsync(connection, token, TokenTypes.Access, TokenAudiences.Broker, deviceId, cancellationToken);

    public Task<VerifiedToken> VerifyRegistrationTokenAsync(IDeviceConnection connection, string token, string deviceId, CancellationToken cancellationToken) =>
        VerifyAsync(connection, token, TokenTypes.Registration, TokenAudiences.Registration, deviceId, cancellationToken);

    private async Task<VerifiedToken> VerifyAsync(IDeviceConnection connection, string token, string type, string audience, string deviceId, CancellationToken cancellationToken)
    {
        if (!_options.ValidateServerTokens)
        {
            var read = ReadWithoutValidation(token);
            if (read.IssuedAt > DateTimeOffset.UnixEpoch)
            {
                MeasureOffset(read.IssuedAt);
            }

            return read;
        }

        if (_keys.Count == 0 && _options.ServerKeysPath is null)
        {
            await FetchKeysAsync(connection, cancellationToken).ConfigureAwait(false);
        }

        // Measure the offset from the token's own iat (read, not yet trusted); keep it only if the token then validates.
        var previousOffset = _clock.Offset;
        if (TryReadIssuedAt(token) is { } issuedAt)
        {
            MeasureOffset(issuedAt);
        }

        var outcome = await _validator.ValidateAsync(token, type, audience, _keys).ConfigureAwait(false);
        if (!outcome.IsValid && outcome.Failure == "unknown signing key" && _options.ServerKeysPath is null)
        {
            await FetchKeysAsync(connection, cancellationToken).ConfigureAwait(false);
            outcome = await _validator.ValidateAsync(token, type, audience, _keys).ConfigureAwait(false);
        }

        if (!outcome.IsValid)
        {
            _clock.Offset = previousOffset;
            throw new EnrollProtocolException($"the server's {type} failed validation: {outcome.Failure}");
        }

        if (!string.Equals(outcome.Subject, deviceId, StringComparison.Ordinal))
        {
            throw new EnrollProtocolException($"the server's {type} names device '{outcome.Subject}', not '{deviceId}'");
        }

        return new VerifiedToken(outcome.IssuedAt, outcome.ExpiresAt, outcome.Claims.GetValueOrDefault("org_id"));
    }

    /// <summary>
    /// The server's current encryption key, from the pinned key file or the published key set (fetched when the device
    /// has none, or again when <paramref name="refetch"/> is set after the server refused an old key).
    /// </summary>
    public async Task<(string KeyId, System.Security.Cryptography.ECDiffieHellman Key)> GetEncryptionKeyAsync(IDeviceConnection connection, bool refetch, CancellationToken cancellationToken)
    {
        if ((_encryptionKey is null || refetch) && _options.ServerKeysPath is null)
        {
            await FetchKeysAsync(connection, cancellationToken).ConfigureAwait(false);
        }

        return _encryptionKey ?? throw new EnrollProtocolException(
            "the server publishes no encryption key; turn EncryptRequests off or update the server");
    }

    /// <summary>
    /// Sets the clock offset from a token the server just issued: its issue time against the local time now. Within
    /// <see cref="EnrollDeviceOptions.ClockSkew"/> the clocks are taken to agree (offset zero).
    /// </summary>
    private void MeasureOffset(DateTimeOffset issuedAt)
    {
        var measured = issuedAt - _clock.LocalNow;
        _clock.Offset = measured.Duration() > _options.ClockSkew ? measured : TimeSpan.Zero;
    }

    private static DateTimeOffset? TryReadIssuedAt(string token)
    {
        try
        {
            var jwt = new JsonWebToken(token);
            return jwt.TryGetPayloadValue<long>("iat", out var iat) ? DateTimeOffset.FromUnixTimeSeconds(iat) : null;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static VerifiedToken ReadWithoutValidation(string token)
    {
        try
        {
            var jwt = new JsonWebToken(token);
            jwt.TryGetPayloadValue<string>("org_id", out var orgId);
            return new VerifiedToken(new DateTimeOffset(jwt.IssuedAt, TimeSpan.Zero), new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero), orgId);
        }
        catch (ArgumentException ex)
        {
            throw new EnrollProtocolException($"the server's token cannot be read: {ex.Message}", ex);
        }
    }

    private async Task FetchKeysAsync(IDeviceConnection connection, CancellationToken cancellationToken)
    {
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        Task OnMessage(IncomingMessage message)
        {
            if (message.Topic == EnrollTopics.ServerKeys)
            {
                received.TrySetResult(Encoding.UTF8.GetString(message.Payload.Span));
            }

            return Task.CompletedTask;
        }

        connection.MessageReceived += OnMessage;
        try
        {
            await connection.SubscribeAsync(EnrollTopics.ServerKeys, 1, cancellationToken).ConfigureAwait(false);
            string json;
            try
            {
                json = await received.Task.WaitAsync(_options.AttemptTimeout, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException ex)
            {
                throw new EnrollProtocolException(
                    $"the server published no signing keys on {EnrollTopics.ServerKeys} within {_options.AttemptTimeout}; " +
                    "pin them with ServerKeysPath or turn ValidateServerTokens off", ex);
            }

            if (json != _keysJson)
            {
                // Not already taken by the listener (see Listen) from the same message.
                UseKeys(json);
                Log.ServerKeysFetched(_logger, _keys.Count, EnrollTopics.ServerKeys);
            }
        }
        finally
        {
            connection.MessageReceived -= OnMessage;
            try
            {
                await connection.UnsubscribeAsync(EnrollTopics.ServerKeys, CancellationToken.None).ConfigureAwait(false);
            }
            catch (EnrollConnectionException)
            {
                // The connection went away; nothing to clean up.
            }
        }
    }

    private void UseKeys(string json)
    {
        if (!EnrollJson.TryDeserialize(Encoding.UTF8.GetBytes(json), EnrollJsonContext.Default.ServerKeySet, out var set, out var error))
        {
            throw new EnrollProtocolException($"the server's key set cannot be read: {error}");
        }

        try
        {
            _keys = ServerKeyConversions.ToVerificationKeys(set);
            _encryptionKey = ServerKeyConversions.ToEncryptionKey(set);
        }
        catch (Exception ex) when (ex is FormatException or JsonException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new EnrollProtocolException($"the server's key set holds an invalid key: {ex.Message}", ex);
        }

        _keysJson = json;
    }
}
