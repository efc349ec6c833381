using Enroll.Device.Diagnostics;
using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;

namespace Enroll.Device;

public sealed partial class RegistrationService
{
    /// <summary>
    /// Token care waits between this and twice this (jittered) after a failed renewal, which itself made up to
    /// <see cref="EnrollDeviceOptions.MaxAttempts"/> attempts, before trying again.
    /// </summary>
    internal static readonly TimeSpan CareRetryDelay = TimeSpan.FromMinutes(1);

    private TaskCompletionSource _careWake = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Returns a valid access token (the MQTT password), renewing it by registering again when it is about to expire.
    /// Concurrent callers share one renewal.
    /// </summary>
    public async Task<string> GetAccessTokenAsync(CancellationToken cancellationToken = default)
    {
        var current = await LoadAsync(cancellationToken).ConfigureAwait(false);
        if (HasFreshAccessToken(current, _timeProvider.GetUtcNow()))
        {
            return current.AccessToken!;
        }

        var renewed = await _renewFlight.RunAsync(() => RenewAccessTokenAsync(RunToken)).WaitAsync(cancellationToken).ConfigureAwait(false);
        return renewed.AccessToken!;
    }

    /// <summary>
    /// Exchanges the Registration Token for a new one (<c>enroll/v1/tokens/refresh</c>). Concurrent callers share one
    /// refresh. When the server refuses the token and the device holds a Provisioning Token, the device re-provisions
    /// itself, asking for its old Device ID.
    /// </summary>
    public Task RefreshRegistrationTokenAsync(CancellationToken cancellationToken = default) =>
        _refreshFlight.RunAsync(() => RefreshCoreAsync(RunToken)).WaitAsync(cancellationToken);

    /// <summary>
    /// Keeps the device registered until <paramref name="cancellationToken"/> is cancelled: refreshes the Registration
    /// Token when about 20 % of its lifetime remains, renews the access token before it expires, and re-provisions when the
    /// Registration Token is expired or revoked. All waits go through the <see cref="TimeProvider"/>.
    /// </summary>
    internal async Task RunTokenCareAsync(CancellationToken cancellationToken)
    {
        // Ends only by cancellation, and then always with OperationCanceledException, wherever the loop was.
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var credentials = await LoadAsync(cancellationToken).ConfigureAwait(false);
            var now = _timeProvider.GetUtcNow();
            var due = NextCareAt(credentials, now);
            if (due > now)
            {
                await WaitForCareAsync(due, cancellationToken).ConfigureAwait(false);
                continue;
            }

            try
            {
                await CareAsync(credentials, cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollException ex) when (ex is EnrollTimeoutException or EnrollConnectionException { CredentialsRefused: false, CertificateRefused: false } or EnrollServerException { IsPermanent: false })
            {
                var delay = _jitter.Spread(CareRetryDelay * 2);
                Log.TokenCareRetry(_logger, ex.Message, delay);
                _health.Report(DeviceComponents.Registration, FaultKindOf(ex), $"{ex.Message}; token care tries again in {delay.TotalSeconds:0} s");
                await WaitForCareAsync(_timeProvider.GetUtcNow() + delay, cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollException ex)
            {
                // Permanent: say so and stop caring; the agent ends (see TerminalFailure), an operator has to resolve it.
                Fail(ex);
                throw;
            }
        }
    }

    /// <summary>Wakes token care early (for example after the server said the Registration Token is expiring).</summary>
    internal void WakeTokenCare() => _careWake.TrySetResult();

    /// <summary>Waits until <paramref name="due"/> (by the <see cref="TimeProvider"/>) or an early wake-up.</summary>
    private async Task WaitForCareAsync(DateTimeOffset due, CancellationToken cancellationToken)
    {
        var wake = _careWake;
        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var delay = due - _timeProvider.GetUtcNow();
        var elapsed = Task.Delay(delay > TimeSpan.Zero ? delay : TimeSpan.Zero, _timeProvider, timer.Token);

        // The clock may have moved between reading it and starting the timer; do not sleep past a due time already reached.
        if (_timeProvider.GetUtcNow() < due)
        {
            await Task.WhenAny(elapsed, wake.Task).ConfigureAwait(false);
        }

        await timer.CancelAsync().ConfigureAwait(false);
        if (wake.Task.IsCompleted)
        {
            Interlocked.CompareExchange(ref _careWake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), wake);
        }

        cancellationToken.ThrowIfCancellationRequested();
    }

    /// <summary>The next moment token care has work: a refresh, a renewal, or now when something is missing.</summary>
    private DateTimeOffset NextCareAt(DeviceCredentials? credentials, DateTimeOffset now)
    {
        if (credentials?.DeviceId is null || credentials.AccessTokenExpiresAt is null)
        {
            return now;
        }

        var renewAt = AccessRenewAt(credentials);
        if (credentials.RegistrationToken is null)
        {
            return renewAt;
        }

        var refreshAt = credentials.RegistrationTokenRefreshAt ?? credentials.RegistrationTokenExpiresAt!.Value;
        return refreshAt < renewAt ? refreshAt : renewAt;
    }

    private async Task CareAsync(DeviceCredentials? credentials, CancellationToken cancellationToken)
    {
        var now = _timeProvider.GetUtcNow();
        if (credentials?.RegistrationToken is not null && (credentials.RegistrationTokenRefreshAt ?? credentials.RegistrationTokenExpiresAt) <= now)
        {
            await RefreshRegistrationTokenAsync(cancellationToken).ConfigureAwait(false);
            credentials = await LoadAsync(cancellationToken).ConfigureAwait(false);
        }

        if (!HasFreshAccessToken(credentials, _timeProvider.GetUtcNow()))
        {
            await GetAccessTokenAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<DeviceCredentials> RenewAccessTokenAsync(CancellationToken cancellationToken)
    {
        await _flowLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await RenewAccessTokenLockedAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _flowLock.Release();
        }
    }

    private async Task<DeviceCredentials> RefreshCoreAsync(CancellationToken cancellationToken)
    {
        await _flowLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await RefreshLockedAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _flowLock.Release();
        }
    }

    private async Task<DeviceCredentials> RenewAccessTokenLockedAsync(CancellationToken cancellationToken)
    {
        var credentials = await LoadAsync(cancellationToken).ConfigureAwait(false) ?? new DeviceCredentials { ClientId = _options.ClientId, ProvisioningToken = _options.ProvisioningToken };
        if (HasFreshAccessToken(credentials, _timeProvider.GetUtcNow()))
        {
            return credentials;
        }

        Log.RenewingAccessToken(_logger, credentials.DeviceId ?? "(new device)");
        return await ObtainRegistrationAsync(credentials, cancellationToken).ConfigureAwait(false);
    }

    private async Task<DeviceCredentials> RefreshLockedAsync(CancellationToken cancellationToken)
    {
        var credentials = await LoadAsync(cancellationToken).ConfigureAwait(false)
            ?? throw new EnrollException("the device has no Registration Token to refresh; register first");
        if (!credentials.HasValidRegistrationToken(_timeProvider.GetUtcNow()))
        {
            // Expired (for example while offline): get a new identity the way a first start would.
            return await ObtainRegistrationAsync(credentials, cancellationToken).ConfigureAwait(false);
        }

        TokenRefreshResponse response;
        try
        {
            response = await _sender.SendAsync(
                EnrollRequests.TokensRefresh,
                requestId => new TokenRefreshRequest
                {
                    RegistrationToken = credentials.RegistrationToken,
                    ClientId = credentials.ClientId,
                    DeviceId = credentials.DeviceId,
                    RequestId = requestId,
                },
                () => ConnectionFor(credentials),
                connection => ResponseTopicFor(connection, credentials.DeviceId),
                null,
                cancellationToken).ConfigureAwait(false);
        }
        catch (EnrollServerException ex) when (ex.Code == ErrorCodes.Unauthorized)
        {
            // Revoked, reused or unknown: the token is worthless. Re-provision when possible, else fail for good.
            Log.RegistrationTokenRefused(_logger, ex.ServerMessage);
            ReportRegistrationTokenRefused(ex);
            credentials = await SaveAsync(WithoutRegistrationToken(credentials) with { AccessToken = null, AccessTokenExpiresAt = null }, cancellationToken).ConfigureAwait(false);
            if (credentials.ProvisioningToken is null)
            {
                throw;
            }

            return await ObtainRegistrationAsync(credentials, cancellationToken).ConfigureAwait(false);
        }

        if (string.IsNullOrEmpty(response.RegistrationToken))
        {
            throw new EnrollProtocolException("the server's refresh answer lacks registration_token");
        }

        var refreshed = await WithRegistrationTokenAsync(credentials, response.RegistrationToken, credentials.DeviceId!, cancellationToken).ConfigureAwait(false);
        refreshed = await SaveAsync(refreshed, cancellationToken).ConfigureAwait(false);
        Log.RegistrationTokenRefreshed(_logger, refreshed.DeviceId!, refreshed.RegistrationTokenExpiresAt!.Value);
        _state.TransitionTo(DeviceState.Registered, s => WithIdentity(s, refreshed));
        MarkRegistered();
        return refreshed;
    }
}
