using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device.Outbox;

/// <summary>The device's authenticated connection at one moment; a new <see cref="Generation"/> means it reconnected.</summary>
internal sealed record DeviceLink(IDeviceConnection Connection, string DeviceId, long Generation)
{
    public bool IsCurrent => Connection.IsConnected && Connection.Generation == Generation;
}

/// <summary>
/// Keeps the device connected as itself (username = Device ID, password = access token) for data traffic. It waits while
/// the device has no identity, renews the access token when it is about to expire, re-registers when the broker refuses
/// the token, reconnects with jittered backoff, and reconnects at once after the token was renewed.
/// </summary>
internal sealed class DeviceSession : IDisposable
{
    private readonly RegistrationService _registration;
    private readonly IDeviceConnection _connection;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;

    public DeviceSession(RegistrationService registration, IDeviceConnection connection, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<DeviceSession> logger)
    {
        _registration = registration;
        _connection = connection;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _registration.CredentialsChanged += OnCredentialsChanged;
    }

    /// <summary>Returns a live, authenticated connection, waiting and retrying as long as it takes.</summary>
    public async Task<DeviceLink> ConnectAsync(CancellationToken cancellationToken)
    {
        var delay = _options.InitialBackoff;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var credentials = await _registration.WaitForIdentityAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!credentials.HasValidAccessToken(_timeProvider.GetUtcNow(), TimeSpan.Zero))
                {
                    await _registration.GetAccessTokenAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var wanted = ConnectionCredentials.AsDevice(credentials.ClientId, credentials.DeviceId!, credentials.AccessToken!);
                await _connection.ConnectAsync(wanted, cancellationToken).ConfigureAwait(false);
                return new DeviceLink(_connection, credentials.DeviceId!, _connection.Generation);
            }
            catch (EnrollConnectionException ex) when (ex.CredentialsRefused)
            {
                // Revoked or expired at the broker: register again (re-provisioning if needed) before the next try.
                Log.SessionRefused(_logger, ex.Message);
                await _registration.InvalidateAccessTokenAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollException ex) when (ex is EnrollConnectionException or EnrollTimeoutException or EnrollServerException { IsPermanent: false })
            {
                var wait = _options.UseJitter ? delay * (0.5 + (Random.Shared.NextDouble() * 0.5)) : delay;
                Log.SessionRetry(_logger, ex.Message, wait);
                await Task.Delay(wait, _timeProvider, cancellationToken).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxBackoff.Ticks));
            }
            catch (EnrollException ex)
            {
                // Permanent: the registration service reports it; wait for new credentials before trying again.
                Log.SessionRetry(_logger, ex.Message, _options.MaxBackoff);
                await Task.Delay(_options.MaxBackoff, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private void OnCredentialsChanged(DeviceCredentials credentials)
    {
        // A renewed access token: move the live connection over to it (the publisher resends what was in flight).
        if (_connection.IsConnected && _connection.Credentials is { IsAuthenticated: true } current
            && credentials.AccessToken is { } token && credentials.DeviceId is { } deviceId
            && current.Password != token)
        {
            _ = ReconnectAsync(ConnectionCredentials.AsDevice(credentials.ClientId, deviceId, token));
        }
    }

    private async Task ReconnectAsync(ConnectionCredentials credentials)
    {
        try
        {
            await _connection.ConnectAsync(credentials, CancellationToken.None).ConfigureAwait(false);
        }
        catch (EnrollException ex)
        {
            Log.SessionRetry(_logger, ex.Message, TimeSpan.Zero);
        }
    }

    public void Dispose() => _registration.CredentialsChanged -= OnCredentialsChanged;
}
