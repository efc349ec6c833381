using Enroll.Device.Diagnostics;
using Enroll.Device.Requests;
using Enroll.Device.Tokens;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// Gives the device an identity and keeps it (SPEC §2.1-2.3): registers with a Registration Token, or with an
/// auto-approve Provisioning Token in one request, or asks an operator through a provisioning operation and waits for the
/// decision; then refreshes the Registration Token and renews the access token before they expire.
/// <see cref="StartAsync"/> is idempotent while running; <see cref="StopAsync(CancellationToken)"/> cancels retries, unsubscribes the
/// response topic and resets the state, after which the service can be started again. Stopping a service that is not
/// running is an error.
/// </summary>
public sealed partial class RegistrationService : IAsyncDisposable
{
    private readonly EnrollDeviceOptions _options;
    private readonly ICredentialStore _store;
    private readonly IDeviceInfoProvider _deviceInfo;
    private readonly RequestChannel _channel;
    private readonly ServerRequestSender _sender;
    private readonly ServerTokenVerifier _verifier;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly DeviceMetrics? _metrics;
    private readonly DeviceHealth _health;
    private readonly Jitter _jitter;
    private readonly Registration.DeviceStateMachine _state;
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _credentialsLock = new(1, 1);

    // One credential flow at a time (start, renewal, refresh, re-provisioning): each reads the credentials the previous
    // one stored, so no flow ever saves a stale copy over a newer token.
    private readonly SemaphoreSlim _flowLock = new(1, 1);
    private readonly SingleFlight<DeviceCredentials> _renewFlight = new();
    private readonly SingleFlight<DeviceCredentials> _refreshFlight = new();
    private Task<DeviceIdentity>? _run;
    private volatile string? _connectionRefusal;
    private readonly Func<IDisposable>? _ownStateFolder;
    private readonly TaskCompletionSource _terminated = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IDisposable? _folderLock;
    private EnrollException? _terminalFailure;
    private CancellationTokenSource? _runCancellation;
    private DeviceCredentials? _credentials;

    internal RegistrationService(
        IOptions<EnrollDeviceOptions> options,
        ICredentialStore store,
        IDeviceInfoProvider deviceInfo,
        RequestChannel channel,
        ServerRequestSender sender,
        ServerTokenVerifier verifier,
        TimeProvider timeProvider,
        ILogger<RegistrationService> logger,
        DeviceMetrics? metrics = null,
        DeviceHealth? health = null,
        Jitter? jitter = null,
        Func<IDisposable>? ownStateFolder = null)
    {
        _ownStateFolder = ownStateFolder;
        _options = options.Value;
        _store = store;
        _deviceInfo = deviceInfo;
        _channel = channel;
        _sender = sender;
        _verifier = verifier;
        // Token times are the server's: every comparison with them goes through the clock the verifier corrects.
        _timeProvider = verifier.Clock;
        _logger = logger;
        _metrics = metrics;
        _health = health ?? new DeviceHealth(timeProvider);
        _jitter = jitter ?? Jitter.None;
        _state = new Registration.DeviceStateMachine(_options.ClientId);
        _state.Changed += (_, args) => StatusChanged?.Invoke(this, args);
        _channel.Unsolicited += OnUnsolicitedAsync;
    }

    /// <summary>Raised on every change of <see cref="Status"/>.</summary>
    public event EventHandler<DeviceStatusChangedEventArgs>? StatusChanged;

    /// <summary>Raised after new tokens were stored (registration, renewal, refresh), for example to reconnect with them.</summary>
    internal event Action<DeviceCredentials>? CredentialsChanged;

    /// <summary>
    /// Why the device agent (<see cref="EnrollDeviceAgent"/>) stopped for good, or null while it runs or retries: a
    /// permanent refusal with no way back (for example a revoked device without a Provisioning Token), or a state folder
    /// owned by another process. Once set, <see cref="Status"/> is <see cref="DeviceState.Failed"/> and
    /// <see cref="Terminated"/> has completed; the agent also asks the host to stop
    /// (<c>IHostApplicationLifetime.StopApplication</c>).
    /// </summary>
    public EnrollException? TerminalFailure => Volatile.Read(ref _terminalFailure);

    /// <summary>Completes when the device agent stopped for good (see <see cref="TerminalFailure"/>); never faults.</summary>
    public Task Terminated => _terminated.Task;

    /// <summary>Records that the agent gave up for good.</summary>
    internal void Terminate(EnrollException failure)
    {
        if (Interlocked.CompareExchange(ref _terminalFailure, failure, null) is null)
        {
            if (_state.Current.State != DeviceState.Failed)
            {
                _state.TransitionTo(DeviceState.Failed, s => s with { Failure = failure.Message });
            }

            _terminated.TrySetResult();
        }
    }

    /// <summary>The faults the device is in (registration, connection, ...), shared with the other background loops.</summary>
    internal DeviceHealth Health => _health;

    // Stays until the device is registered again: while a re-provisioning waits for an operator, status says why it began.
    private void ReportRegistrationTokenRefused(EnrollServerException ex) =>
        _health.Report(DeviceComponents.Registration, DeviceFaultKind.ServerRefused, $"the server refused the Registration Token ({ex.ServerMessage}); provisioning again with the Provisioning Token");

    /// <summary>
    /// Records in the status that the broker keeps refusing the device's fresh access tokens (the data connection is down
    /// for good until that changes); the message stays in <see cref="DeviceStatus.Failure"/> until a CONNECT works.
    /// </summary>
    internal void ReportConnectionRefused(string message)
    {
        _connectionRefusal = message;
        var state = _state.Current.State;
        if (Registration.DeviceStateMachine.CanTransition(state, state))
        {
            _state.TransitionTo(state, s => s with { Failure = message });
        }
    }

    /// <summary>The broker accepted the device again.</summary>
    internal void ClearConnectionRefused()
    {
        _connectionRefusal = null;
        var state = _state.Current.State;
        if (state != DeviceState.Failed && Registration.DeviceStateMachine.CanTransition(state, state))
        {
            _state.TransitionTo(state, s => s with { Failure = null });
        }
    }

    /// <summary>The current status.</summary>
    public DeviceStatus Status => _state.Current;

    /// <summary>True between a start and the matching stop (also after a successful registration).</summary>
    public bool IsRunning
    {
        get
        {
            lock (_gate)
            {
                return _run is not null;
            }
        }
    }

    /// <summary>
    /// Registers the device unless a stored access token is still valid, and returns its identity. With a Provisioning
    /// Token that needs approval this waits (status <see cref="DeviceState.Pending"/>) until an operator decides; cancel
    /// <paramref name="cancellationToken"/> to stop waiting — the operation is remembered and resumed by the next start.
    /// Calling it again while running returns the same registration; calling it after a failure starts a new one.
    /// </summary>
    /// <exception cref="EnrollServerException">The server refused the device for good (for example rejected).</exception>
    /// <exception cref="EnrollTimeoutException">No answer after <see cref="EnrollDeviceOptions.MaxAttempts"/> attempts.</exception>
    /// <exception cref="EnrollProtocolException">A request could not be built or the server's token failed validation.</exception>
    public Task<DeviceIdentity> StartAsync(CancellationToken cancellationToken = default)
    {
        Task<DeviceIdentity> run;
        lock (_gate)
        {
            if (_run is null && _ownStateFolder is not null && _folderLock is null)
            {
                try
                {
                    _folderLock = _ownStateFolder();
                }
                catch (StateFolderInUseException ex)
                {
                    _state.TransitionTo(DeviceState.Failed, s => s with { Failure = ex.Message });
                    return Task.FromException<DeviceIdentity>(ex);
                }
            }

            if (_run is null || _run.IsFaulted || _run.IsCanceled)
            {
                _runCancellation?.Dispose();
                _runCancellation = new CancellationTokenSource();
                _run = RunAsync(_runCancellation.Token);
            }

            run = _run;
        }

        return run.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Stops the service: cancels a registration under way (and its retries), unsubscribes the response topic and resets
    /// the status to <see cref="DeviceState.Stopped"/>. The stored identity is kept.
    /// </summary>
    /// <exception cref="InvalidOperationException">The service is not running.</exception>
    public Task StopAsync(CancellationToken cancellationToken = default) => StopAsync(keepStateFolder: false, cancellationToken);

    /// <summary>
    /// Stops like <see cref="StopAsync(CancellationToken)"/>; with <paramref name="keepStateFolder"/> the state folder stays
    /// owned (the agent between two attempts), so no other process can take it in the gap.
    /// </summary>
    internal async Task StopAsync(bool keepStateFolder, CancellationToken cancellationToken)
    {
        Task<DeviceIdentity> run;
        CancellationTokenSource cancellation;
        IDisposable? folderLock;
        lock (_gate)
        {
            if (_run is null || _runCancellation is null)
            {
                throw new InvalidOperationException("The registration service is not running.");
            }

            run = _run;
            cancellation = _runCancellation;
            folderLock = keepStateFolder ? null : _folderLock;
            _run = null;
            _runCancellation = null;
            _folderLock = keepStateFolder ? _folderLock : null;
        }

        await cancellation.CancelAsync().ConfigureAwait(false);
        try
        {
            await run.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or EnrollException)
        {
            // The run's outcome was reported when it happened; stopping only needs it to end.
        }
        finally
        {
            cancellation.Dispose();
        }

        try
        {
            await _channel.UnsubscribeAllAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            folderLock?.Dispose();
        }

        _state.TransitionTo(DeviceState.Stopped, _ => new DeviceStatus { State = DeviceState.Stopped, ClientId = _options.ClientId });
        Log.Stopped(_logger);
    }

    /// <summary>Gives up the state folder kept by <see cref="StopAsync(bool, CancellationToken)"/> (the agent stopped for good).</summary>
    internal void ReleaseStateFolder()
    {
        IDisposable? folderLock;
        lock (_gate)
        {
            if (_run is not null)
            {
                return;
            }

            folderLock = _folderLock;
            _folderLock = null;
        }

        folderLock?.Dispose();
    }

    /// <summary>The token of the service's current run; requests outside a run are cancelled by nothing but their caller.</summary>
    private CancellationToken RunToken
    {
        get
        {
            lock (_gate)
            {
                return _runCancellation?.Token ?? CancellationToken.None;
            }
        }
    }

    private async Task<DeviceIdentity> RunAsync(CancellationToken cancellationToken)
    {
        // Leave the caller's thread before doing any I/O.
        await Task.Yield();
        try
        {
            await _flowLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                return await RegisterOrReuseAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _flowLock.Release();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            Fail(ex);
            throw;
        }
    }

    private void Fail(Exception ex)
    {
        _health.Report(DeviceComponents.Registration, FaultKindOf(ex), ex.Message);
        _metrics?.Registration("failed");
        Log.RegistrationFailed(_logger, ex.Message);
        _state.TransitionTo(DeviceState.Failed, s => s with { Failure = ex.Message });
    }

    private async Task<DeviceIdentity> RegisterOrReuseAsync(CancellationToken cancellationToken)
    {
        var stored = await LoadAsync(cancellationToken).ConfigureAwait(false);
        var now = _timeProvider.GetUtcNow();
        if (HasFreshAccessToken(stored, now))
        {
            Log.RegistrationSkipped(_logger, stored.DeviceId!, stored.AccessTokenExpiresAt!.Value);
            _metrics?.Registration("skipped");
            _state.TransitionTo(DeviceState.Registered, s => WithIdentity(s, stored));
            MarkRegistered();
            return ToIdentity(stored, skipped: true);
        }

        var credentials = stored ?? new DeviceCredentials { ClientId = _options.ClientId };
        if (_options.ProvisioningToken is { Length: > 0 } token && credentials.ProvisioningToken != token)
        {
            // An operation pending under the old token can only be completed with that token (the server checks), so a
            // new token starts over instead of asking for an operation that can never be collected.
            credentials = credentials with { ProvisioningToken = token, PendingOperationId = null, PendingOperationExpiresAt = null };
        }

        _state.TransitionTo(DeviceState.Connecting, s => s with { DeviceId = credentials.DeviceId, Attempt = 0, Failure = null });
        var registered = await ObtainRegistrationAsync(credentials, cancellationToken).ConfigureAwait(false);
        return ToIdentity(registered, skipped: false);
    }

    /// <summary>Loads the stored credentials once per process (later reads use the cached copy) and checks they are ours.</summary>
    private async Task<DeviceCredentials?> LoadAsync(CancellationToken cancellationToken)
    {
        var stored = _credentials ?? await _store.LoadAsync(cancellationToken).ConfigureAwait(false);
        if (stored is not null && !string.Equals(stored.ClientId, _options.ClientId, StringComparison.Ordinal))
        {
            throw new EnrollException(
                $"the state in {_options.StatePath} belongs to client '{stored.ClientId}', not '{_options.ClientId}'; use another state folder");
        }

        _verifier.Seed(stored?.ServerKeys);
        _credentials = stored;
        return stored;
    }

    /// <summary>Stores new credentials durably, then announces them.</summary>
    private async Task<DeviceCredentials> SaveAsync(DeviceCredentials credentials, CancellationToken cancellationToken)
    {
        await _credentialsLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _store.SaveAsync(credentials, cancellationToken).ConfigureAwait(false);
            _credentials = credentials;
        }
        finally
        {
            _credentialsLock.Release();
        }

        CredentialsChanged?.Invoke(credentials);
        WakeTokenCare();
        return credentials;
    }

    /// <summary>The credentials as last loaded or stored in this process.</summary>
    internal DeviceCredentials? CurrentCredentials => _credentials;

    /// <summary>Returns the credentials once the device has a Device ID and an access token, waiting for them if needed.</summary>
    internal async Task<DeviceCredentials> WaitForIdentityAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var changed = new TaskCompletionSource<DeviceCredentials>(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnChanged(DeviceCredentials credentials) => changed.TrySetResult(credentials);
            CredentialsChanged += OnChanged;
            try
            {
                var current = await LoadAsync(cancellationToken).ConfigureAwait(false);
                if (current is { DeviceId: not null, AccessToken: not null })
                {
                    return current;
                }

                await changed.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                CredentialsChanged -= OnChanged;
            }
        }
    }

    /// <summary>
    /// Forgets the access token <paramref name="refused"/> (the broker refused it), so the next
    /// <see cref="GetAccessTokenAsync"/> registers again. A newer token stored meanwhile is kept.
    /// </summary>
    internal async Task InvalidateAccessTokenAsync(string? refused, CancellationToken cancellationToken)
    {
        var current = await LoadAsync(cancellationToken).ConfigureAwait(false);
        if (current?.AccessToken is not null && (refused is null || current.AccessToken == refused))
        {
            await SaveAsync(current with { AccessToken = null, AccessTokenExpiresAt = null }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// When to renew the access token of <paramref name="credentials"/>, in the server's time (see
    /// <see cref="RefreshSchedule.AccessRenewAt"/>); tokens stored without an issue time keep the old fixed margin.
    /// </summary>
    internal DateTimeOffset AccessRenewAt(DeviceCredentials credentials)
    {
        var expires = credentials.AccessTokenExpiresAt ?? DateTimeOffset.MinValue;
        return credentials.AccessTokenRenewAt
            ?? (credentials.AccessTokenIssuedAt is { } issued
                ? RefreshSchedule.AccessRenewAt(issued, expires, _options.AccessTokenRenewBefore, 0.5)
                : expires - _options.AccessTokenRenewBefore);
    }

    /// <summary>True when <paramref name="credentials"/> hold an access token not yet due for renewal.</summary>
    private bool HasFreshAccessToken([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] DeviceCredentials? credentials, DateTimeOffset now) =>
        credentials is not null && credentials.HasValidAccessToken(now, TimeSpan.Zero) && now < AccessRenewAt(credentials);

    /// <summary>
    /// Registration works: clears the registration fault, or reports <see cref="DeviceFaultKind.ClockSkew"/> while the
    /// device's clock is off by more than <see cref="EnrollDeviceOptions.ClockSkew"/> (the device keeps working by the
    /// server's clock).
    /// </summary>
    private void MarkRegistered()
    {
        var offset = _verifier.Clock.Offset;
        if (offset == TimeSpan.Zero)
        {
            _health.Clear(DeviceComponents.Registration);
            return;
        }

        var direction = offset > TimeSpan.Zero ? "behind" : "ahead of";
        var message = $"the device's clock is {FormatOffset(offset.Duration())} {direction} the server's (tolerance {FormatOffset(_options.ClockSkew)}); tokens are scheduled by the server's clock, but fix the device's time (NTP)";
        if (_health.FaultOf(DeviceComponents.Registration) is not { Kind: DeviceFaultKind.ClockSkew })
        {
            Log.ClockSkewMeasured(_logger, offset, _options.ClockSkew);
        }

        _health.Report(DeviceComponents.Registration, DeviceFaultKind.ClockSkew, message);
    }

    private static string FormatOffset(TimeSpan offset) =>
        offset.TotalHours >= 1 ? $"{offset.TotalHours:0.##} h ({offset.TotalSeconds:0} s)" : $"{offset.TotalSeconds:0} s";

    /// <summary>The fault kind a registration failure (or a retry's cause) stands for.</summary>
    internal static DeviceFaultKind FaultKindOf(Exception? cause) => cause switch
    {
        // Out of attempts: the fault is the last attempt's cause (a broker that cannot be reached, a busy server).
        EnrollTimeoutException { InnerException: { } last } => FaultKindOf(last),
        null or Polly.Timeout.TimeoutRejectedException or EnrollTimeoutException => DeviceFaultKind.ServerSilent,
        EnrollServerException { IsPermanent: true } => DeviceFaultKind.ServerRefused,
        EnrollServerException => DeviceFaultKind.ServerBusy,
        EnrollConnectionException { CredentialsRefused: true } => DeviceFaultKind.CredentialsRefused,
        EnrollConnectionException => DeviceFaultKind.BrokerUnreachable,
        EnrollException => DeviceFaultKind.ServerRefused,
        _ => DeviceFaultKind.Unexpected,
    };

    /// <summary>A retry is scheduled: the registration component is in the fault its cause stands for.</summary>
    private void ReportRetry(RetryNotice notice)
    {
        var cause = notice.Cause switch
        {
            null or Polly.Timeout.TimeoutRejectedException => "the server did not answer in time",
            EnrollServerException { RetryAfter: { } after } server => $"{server.Message} (the server asked to wait {after.TotalSeconds:0} s)",
            { } other => other.Message,
        };
        _health.Report(DeviceComponents.Registration, FaultKindOf(notice.Cause), $"{cause}; attempt {notice.FailedAttempt + 1} in {notice.Delay.TotalSeconds:0.#} s");
    }

    /// <summary>True when <paramref name="credentials"/> hold an access token the broker should still accept (by the server's clock).</summary>
    internal bool HasUsableAccessToken(DeviceCredentials credentials) => credentials.HasValidAccessToken(_timeProvider.GetUtcNow(), TimeSpan.Zero);

    private DeviceStatus WithIdentity(DeviceStatus status, DeviceCredentials credentials) => status with
    {
        DeviceId = credentials.DeviceId,
        OperationId = credentials.PendingOperationId,
        AccessTokenExpiresAt = credentials.AccessTokenExpiresAt,
        RegistrationTokenExpiresAt = credentials.RegistrationTokenExpiresAt,
        Failure = _connectionRefusal,
    };

    private static DeviceIdentity ToIdentity(DeviceCredentials credentials, bool skipped) => new()
    {
        DeviceId = credentials.DeviceId!,
        ClientId = credentials.ClientId,
        AccessTokenExpiresAt = credentials.AccessTokenExpiresAt!.Value,
        RegistrationTokenExpiresAt = credentials.RegistrationTokenExpiresAt,
        RegistrationSkipped = skipped,
    };

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _channel.Unsolicited -= OnUnsolicitedAsync;
        if (IsRunning)
        {
            await StopAsync().ConfigureAwait(false);
        }

        _folderLock?.Dispose();
        _credentialsLock.Dispose();
        _flowLock.Dispose();
    }

    private sealed class StateObserver(RegistrationService owner) : IRequestObserver
    {
        public void OnAttempt(string request, int attempt) =>
            owner._state.TransitionTo(DeviceState.Registering, s => s with { Attempt = attempt });

        public void OnRetry(string request, RetryNotice notice)
        {
            owner.ReportRetry(notice);
            owner._state.TransitionTo(DeviceState.WaitingToRetry, s => s with { RetryIn = notice.Delay, Failure = notice.Cause?.Message ?? "no answer in time" });
        }
    }
}
