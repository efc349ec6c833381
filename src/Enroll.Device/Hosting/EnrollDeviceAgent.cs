using Enroll.Device.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// The long-running device agent for Generic Host apps: registers the device (waiting for approval when needed, retrying
/// while the server is unreachable) and then keeps it registered — Registration Token refresh, access token renewal,
/// re-provisioning after a revocation — until the host stops.
/// </summary>
public sealed class EnrollDeviceAgent : BackgroundService
{
    private readonly RegistrationService _registration;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<EnrollDeviceAgent> _logger;

    /// <summary>Creates the agent.</summary>
    public EnrollDeviceAgent(RegistrationService registration, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<EnrollDeviceAgent> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _registration = registration;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
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
                var delay = _options.MaxBackoff * (0.5 + (Random.Shared.NextDouble() * 0.5));
                Log.AgentRetry(_logger, ex.Message, delay);
                await _registration.StopAsync(CancellationToken.None).ConfigureAwait(false);
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
                Log.AgentGaveUp(_logger, ex.Message);
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
    }

    /// <inheritdoc />
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        if (_registration.IsRunning)
        {
            await _registration.StopAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
