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
/// the device has no identity, renews the access token when it is about to expire, reconnects with jittered exponential
/// backoff, and reconnects at once after the token was renewed.
/// <para>
/// A broker that refuses the access token is backed off like any other failure, then the device registers again for a
/// fresh token. After <see cref="RefusalsBeforeFault"/> fresh tokens were refused in a row the broker plainly does not
/// accept this server's tokens (for example an external broker without device authentication): the session reports
/// <see cref="DeviceFaultKind.CredentialsRefused"/> for <see cref="DeviceComponents.Connection"/> and from then on tries
/// (one registration and one CONNECT) only once per <see cref="RefusedRetryFactor"/> × <see cref="EnrollDeviceOptions.MaxBackoff"/>,
/// jittered, until a CONNECT works.
/// </para>
/// </summary>
internal sealed class DeviceSession : IDisposable
{
    /// <summary>Fresh access tokens the broker may refuse in a row before the device reports its credentials refused.</summary>
    public const int RefusalsBeforeFault = 3;

    /// <summary>
    /// The slow ceiling once the credentials are refused, in multiples of <see cref="EnrollDeviceOptions.MaxBackoff"/>: at
    /// the default of 60 s, one attempt per 2.5-5 minutes (after jitter).
    /// </summary>
    public const int RefusedRetryFactor = 5;

    private readonly RegistrationService _registration;
    private readonly IDeviceConnection _connection;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly Jitter _jitter;
    private int _refusals;

    public DeviceSession(RegistrationService registration, IDeviceConnection connection, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<DeviceSession> logger, Jitter? jitter = null)
    {
        _registration = registration;
        _connection = connection;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _jitter = jitter ?? Jitter.None;
        _registration.CredentialsChanged += OnCredentialsChanged;
    }

    /// <summary>How many fresh access tokens the broker refused in a row (0 after a CONNECT worked).</summary>
    public int ConsecutiveRefusals => Volatile.Read(ref _refusals);

    /// <summary>Returns a live, authenticated connection, waiting and retrying as long as it takes.</summary>
    public async Task<DeviceLink> ConnectAsync(CancellationToken cancellationToken)
    {
        var failures = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var credentials = await _registration.WaitForIdentityAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!_registration.HasUsableAccessToken(credentials))
                {
                    await _registration.GetAccessTokenAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var wanted = ConnectionCredentials.AsDevice(credentials.ClientId, credentials.DeviceId!, credentials.AccessToken!);
                await _connection.ConnectAsync(wanted, cancellationToken).ConfigureAwait(false);
                if (Interlocked.Exchange(ref _refusals, 0) >= RefusalsBeforeFault)
                {
                    _registration.ClearConnectionRefused();
                }

                _registration.Health.Clear(DeviceComponents.Connection);
                return new DeviceLink(_connection, credentials.DeviceId!, _connection.Generation);
            }
            catch (EnrollConnectionException ex) when (ex.CredentialsRefused)
            {
                // Revoked or expired at the broker, or a broker that does not take this server's tokens at all: wait, then
                // register again for a fresh token. Each token is refused at most once (it is forgotten right after).
                var refusals = Interlocked.Increment(ref _refusals);
                TimeSpan wait;
                if (refusals < RefusalsBeforeFault)
                {
                    wait = _jitter.Backoff(refusals, _options.InitialBackoff, _options.MaxBackoff);
                    Log.SessionRefusedBackoff(_logger, ex.Message, refusals, wait);
                }
                else
                {
                    wait = _jitter.Spread(_options.MaxBackoff * RefusedRetryFactor);
                    var message = $"the broker refused {refusals} fresh access tokens in a row ({ex.Message}); it does not accept this server's device tokens: check the broker's device authentication. Next attempt in {wait.TotalSeconds:0} s";
                    if (refusals == RefusalsBeforeFault)
                    {
                        Log.SessionCredentialsRefused(_logger, refusals, ex.Message, wait);
                    }

                    _registration.Health.Report(DeviceComponents.Connection, DeviceFaultKind.CredentialsRefused, message);
                    _registration.ReportConnectionRefused(message);
                }

                await Task.Delay(wait, _timeProvider, cancellationToken).ConfigureAwait(false);
                await _registration.InvalidateAccessTokenAsync(credentials.AccessToken, cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollException ex) when (ex is EnrollConnectionException or EnrollTimeoutException or EnrollServerException { IsPermanent: false })
            {
                failures++;
                var wait = _jitter.Backoff(failures, _options.InitialBackoff, _options.MaxBackoff);
                Log.SessionRetry(_logger, ex.Message, wait);
                if (ex is EnrollConnectionException)
                {
                    _registration.Health.Report(DeviceComponents.Connection, DeviceFaultKind.BrokerUnreachable, $"{ex.Message} (next attempt in {wait.TotalSeconds:0.#} s)");
                }

                await Task.Delay(wait, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollException ex)
            {
                // Permanent: the registration service reports it; wait for new credentials before trying again.
                var wait = _jitter.Spread(_options.MaxBackoff);
                Log.SessionRetry(_logger, ex.Message, wait);
                await Task.Delay(wait, _timeProvider, cancellationToken).ConfigureAwait(false);
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
            // The publisher's next ConnectAsync deals with it (backoff, refusals).
            Log.SessionRetry(_logger, ex.Message, TimeSpan.Zero);
        }
#pragma warning disable CA1031 // a fire-and-forget reconnect must not leave an unobserved exception behind; it is logged and reported
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.ReconnectFailed(_logger, ex);
            _registration.Health.Report(DeviceComponents.Connection, DeviceFaultKind.Unexpected, $"{ex.GetType().Name}: {ex.Message}");
        }
    }

    public void Dispose() => _registration.CredentialsChanged -= OnCredentialsChanged;
}
