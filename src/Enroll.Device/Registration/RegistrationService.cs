using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Device.Requests;
using Enroll.Device.Tokens;
using Enroll.Protocol;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// Registers the device with the server (SPEC §2.1) and keeps its identity. <see cref="StartAsync"/> is idempotent while
/// running; <see cref="StopAsync"/> cancels retries, unsubscribes the response topic and resets the state, after which
/// the service can be started again. Stopping a service that is not running is an error.
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
    private readonly Registration.DeviceStateMachine _state;
    private readonly Lock _gate = new();
    private Task<DeviceIdentity>? _run;
    private CancellationTokenSource? _runCancellation;

    internal RegistrationService(
        IOptions<EnrollDeviceOptions> options,
        ICredentialStore store,
        IDeviceInfoProvider deviceInfo,
        RequestChannel channel,
        ServerRequestSender sender,
        ServerTokenVerifier verifier,
        TimeProvider timeProvider,
        ILogger<RegistrationService> logger,
        DeviceMetrics? metrics = null)
    {
        _options = options.Value;
        _store = store;
        _deviceInfo = deviceInfo;
        _channel = channel;
        _sender = sender;
        _verifier = verifier;
        _timeProvider = timeProvider;
        _logger = logger;
        _metrics = metrics;
        _state = new Registration.DeviceStateMachine(_options.ClientId);
        _state.Changed += (_, args) => StatusChanged?.Invoke(this, args);
    }

    /// <summary>Raised on every change of <see cref="Status"/>.</summary>
    public event EventHandler<DeviceStatusChangedEventArgs>? StatusChanged;

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
    /// Registers the device unless a stored access token is still valid, and returns its identity. Calling it again while
    /// running returns the same registration; calling it after a failed registration starts a new one.
    /// </summary>
    /// <exception cref="EnrollServerException">The server refused the device for good.</exception>
    /// <exception cref="EnrollTimeoutException">No answer after <see cref="EnrollDeviceOptions.MaxAttempts"/> attempts.</exception>
    /// <exception cref="EnrollProtocolException">A request could not be built or the server's token failed validation.</exception>
    public Task<DeviceIdentity> StartAsync(CancellationToken cancellationToken = default)
    {
        Task<DeviceIdentity> run;
        lock (_gate)
        {
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
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        Task<DeviceIdentity> run;
        CancellationTokenSource cancellation;
        lock (_gate)
        {
            if (_run is null || _runCancellation is null)
            {
                throw new InvalidOperationException("The registration service is not running.");
            }

            run = _run;
            cancellation = _runCancellation;
            _run = null;
            _runCancellation = null;
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

        await _channel.UnsubscribeAllAsync(cancellationToken).ConfigureAwait(false);
        _state.TransitionTo(DeviceState.Stopped, _ => new DeviceStatus { State = DeviceState.Stopped, ClientId = _options.ClientId });
        Log.Stopped(_logger);
    }

    private async Task<DeviceIdentity> RunAsync(CancellationToken cancellationToken)
    {
        // Leave the caller's thread before doing any I/O.
        await Task.Yield();
        try
        {
            return await RegisterOrReuseAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            _metrics?.Registration("failed");
            Log.RegistrationFailed(_logger, ex.Message);
            _state.TransitionTo(DeviceState.Failed, s => s with { Failure = ex.Message });
            throw;
        }
    }

    private async Task<DeviceIdentity> RegisterOrReuseAsync(CancellationToken cancellationToken)
    {
        var stored = await _store.LoadAsync(cancellationToken).ConfigureAwait(false);
        if (stored is not null && !string.Equals(stored.ClientId, _options.ClientId, StringComparison.Ordinal))
        {
            throw new EnrollException(
                $"the state in {_options.StatePath} belongs to client '{stored.ClientId}', not '{_options.ClientId}'; use another state folder");
        }

        var now = _timeProvider.GetUtcNow();
        if (stored is not null && stored.HasValidAccessToken(now, _options.AccessTokenRenewBefore))
        {
            Log.RegistrationSkipped(_logger, stored.DeviceId!, stored.AccessTokenExpiresAt!.Value);
            _metrics?.Registration("skipped");
            _state.TransitionTo(DeviceState.Registered, s => s with
            {
                DeviceId = stored.DeviceId,
                AccessTokenExpiresAt = stored.AccessTokenExpiresAt,
                RegistrationTokenExpiresAt = stored.RegistrationTokenExpiresAt,
                Failure = null,
            });
            return ToIdentity(stored, skipped: true);
        }

        _verifier.Seed(stored?.ServerKeys);
        var credentials = stored ?? new DeviceCredentials { ClientId = _options.ClientId };
        if (_options.ProvisioningToken is { Length: > 0 } token && credentials.ProvisioningToken != token)
        {
            credentials = credentials with { ProvisioningToken = token };
        }

        _state.TransitionTo(DeviceState.Connecting, s => s with { DeviceId = credentials.DeviceId, Attempt = 0, Failure = null });
        var registered = await RegisterAsync(credentials, cancellationToken).ConfigureAwait(false);
        return ToIdentity(registered, skipped: false);
    }

    /// <summary>Sends a registration request with the best credential held and stores the result.</summary>
    private async Task<DeviceCredentials> RegisterAsync(DeviceCredentials credentials, CancellationToken cancellationToken)
    {
        var metadata = _options.SendMetadata
            ? new Dictionary<string, System.Text.Json.JsonElement>(await _deviceInfo.GetMetadataAsync(cancellationToken).ConfigureAwait(false), StringComparer.Ordinal)
            : null;

        RegistrationResponse response;
        try
        {
            response = await SendRegistrationAsync(credentials, metadata, cancellationToken).ConfigureAwait(false);
        }
        catch (EnrollServerException ex) when (ex.Code == ErrorCodes.NotFound && credentials.DeviceId is not null && credentials.ProvisioningToken is not null)
        {
            // The server lost the device (for example a fresh database): start over as a new device.
            Log.StoredDeviceUnknown(_logger, credentials.DeviceId);
            credentials = credentials with { DeviceId = null, AccessToken = null, AccessTokenExpiresAt = null, RegistrationToken = null, RegistrationTokenExpiresAt = null };
            response = await SendRegistrationAsync(credentials, metadata, cancellationToken).ConfigureAwait(false);
        }

        if (string.IsNullOrEmpty(response.DeviceId) || string.IsNullOrEmpty(response.JwtToken))
        {
            throw new EnrollProtocolException("the server's registration answer lacks device_id or jwt_token");
        }

        var access = await _verifier.VerifyAccessTokenAsync(_channel.Connection, response.JwtToken, response.DeviceId, cancellationToken).ConfigureAwait(false);
        var updated = credentials with
        {
            DeviceId = response.DeviceId,
            AccessToken = response.JwtToken,
            AccessTokenExpiresAt = access.ExpiresAt,
            ServerKeys = _verifier.TrustedKeysJson ?? credentials.ServerKeys,
            RegisteredAt = _timeProvider.GetUtcNow(),
            OrgId = access.OrgId ?? _options.OrgId ?? credentials.OrgId,
        };

        if (!string.IsNullOrEmpty(response.RegistrationToken))
        {
            var registration = await _verifier.VerifyRegistrationTokenAsync(_channel.Connection, response.RegistrationToken, response.DeviceId, cancellationToken).ConfigureAwait(false);
            updated = updated with
            {
                RegistrationToken = response.RegistrationToken,
                RegistrationTokenExpiresAt = registration.ExpiresAt,
                RegistrationTokenIssuedAt = registration.IssuedAt,
            };
        }

        await _store.SaveAsync(updated, cancellationToken).ConfigureAwait(false);
        Log.Registered(_logger, updated.DeviceId!, access.ExpiresAt);
        _metrics?.Registration("registered");
        _state.TransitionTo(DeviceState.Registered, s => s with
        {
            DeviceId = updated.DeviceId,
            AccessTokenExpiresAt = updated.AccessTokenExpiresAt,
            RegistrationTokenExpiresAt = updated.RegistrationTokenExpiresAt,
            Failure = null,
        });
        return updated;
    }

    private Task<RegistrationResponse> SendRegistrationAsync(DeviceCredentials credentials, Dictionary<string, System.Text.Json.JsonElement>? metadata, CancellationToken cancellationToken)
    {
        var now = _timeProvider.GetUtcNow();
        var useRegistrationToken = credentials.HasValidRegistrationToken(now);
        return _sender.SendAsync(
            "registration",
            EnrollTopics.Register,
            requestId => new RegistrationRequest
            {
                ClientId = credentials.ClientId,
                DeviceId = credentials.DeviceId,
                DeviceName = _options.DeviceName,
                OrgId = _options.OrgId ?? credentials.OrgId,
                Metadata = metadata,
                RegistrationToken = useRegistrationToken ? credentials.RegistrationToken : null,
                ProvisioningToken = useRegistrationToken ? null : credentials.ProvisioningToken,
                RequestId = requestId,
            },
            EnrollJsonContext.Default.RegistrationRequest,
            EnrollJsonContext.Default.RegistrationResponse,
            () => ConnectionFor(credentials),
            connection => ResponseTopicFor(connection, credentials.DeviceId),
            new StateObserver(_state),
            cancellationToken);
    }

    private ConnectionCredentials ConnectionFor(DeviceCredentials credentials) =>
        credentials.HasValidAccessToken(_timeProvider.GetUtcNow(), TimeSpan.Zero)
            ? ConnectionCredentials.AsDevice(credentials.ClientId, credentials.DeviceId!, credentials.AccessToken!)
            : ConnectionCredentials.Anonymous(credentials.ClientId);

    /// <summary>
    /// The topic to hear the answer on: the device's own topic when connected as the device, else the client's topic.
    /// Under MQTT 3.1.1 the server picks the conventional topic, so the device listens there.
    /// </summary>
    private string ResponseTopicFor(ConnectionCredentials connection, string? deviceId)
    {
        if (_options.ProtocolVersion == MqttProtocol.V311)
        {
            return EnrollTopics.ConventionalResponseTopic(deviceId, connection.ClientId);
        }

        return connection.IsAuthenticated ? EnrollTopics.DeviceResponses(connection.Username!) : EnrollTopics.ClientResponses(connection.ClientId);
    }

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
        if (IsRunning)
        {
            await StopAsync().ConfigureAwait(false);
        }
    }

    private sealed class StateObserver(Registration.DeviceStateMachine state) : IRequestObserver
    {
        public void OnAttempt(string request, int attempt) =>
            state.TransitionTo(DeviceState.Registering, s => s with { Attempt = attempt });

        public void OnRetry(string request, RetryNotice notice) =>
            state.TransitionTo(DeviceState.WaitingToRetry, s => s with { RetryIn = notice.Delay, Failure = notice.Cause?.Message ?? "no answer in time" });
    }
}
