using Enroll.Device.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// The long-running device agent for Generic Host apps: registers the device (waiting for approval when needed, retrying
/// while the server is unreachable) and then keeps it registered — Registration Token refresh, access token renewal,
/// re-provisioning after a revocation — until the host stops. Every loop runs under <see cref="Supervisor"/>.
/// <para>
/// A permanent failure with no way back (the server refused the device for good, a revoked device without a
/// Provisioning Token, a state folder owned by another process) ends the agent: it sets
/// <see cref="RegistrationService.TerminalFailure"/> (status <see cref="DeviceState.Failed"/>), completes
/// <see cref="RegistrationService.Terminated"/> and asks the host to stop through <c>IHostApplicationLifetime</c> when
/// there is one, instead of leaving a process that looks alive but does nothing.
/// </para>
/// </summary>
internal sealed class EnrollDeviceAgent : BackgroundService
{
    private readonly RegistrationService _registration;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<EnrollDeviceAgent> _logger;
    private readonly DeviceHealth _health;
    private readonly Jitter _jitter;
    private readonly IHostApplicationLifetime? _lifetime;

    internal EnrollDeviceAgent(RegistrationService registration, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<EnrollDeviceAgent> logger, DeviceHealth health, Jitter jitter, IHostApplicationLifetime? lifetime = null)
    {
        _lifetime = lifetime;
        ArgumentNullException.ThrowIfNull(options);
        _registration = registration;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _health = health;
        _jitter = jitter;
    }

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Supervisor.RunAsync(DeviceComponents.Agent, RunAsync, _health, _jitter, _timeProvider, _logger, stoppingToken);

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await _registration.StartAsync(stoppingToken).ConfigureAwait(false);
                break;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (EnrollException ex) when (ex is EnrollTimeoutException or EnrollConnectionException { CredentialsRefused: false, CertificateRefused: false } or EnrollServerException { IsPermanent: false })
            {
                var delay = _jitter.Spread(_options.MaxBackoff);
                Log.AgentRetry(_logger, ex.Message, delay);
                _health.Report(DeviceComponents.Registration, RegistrationService.FaultKindOf(ex), $"{ex.Message}; registering again in {delay.TotalSeconds:0} s");
                await _registration.StopAsync(keepStateFolder: true, CancellationToken.None).ConfigureAwait(false);
                try
                {
                    await Task.Delay(delay, _timeProvider, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (EnrollException ex)
            {
                GiveUp(ex);
                return;
            }
        }

        try
        {
            await _registration.RunTokenCareAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (EnrollException ex)
        {
            GiveUp(ex);
        }
    }

    private void GiveUp(EnrollException failure)
    {
        Log.AgentGaveUp(_logger, failure.Message);
        _registration.Terminate(failure);
        _lifetime?.StopApplication();
    }

    /// <inheritdoc />
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        if (_registration.IsRunning)
        {
            await _registration.StopAsync(cancellationToken).ConfigureAwait(false);
        }

        _registration.ReleaseStateFolder();
    }
}
