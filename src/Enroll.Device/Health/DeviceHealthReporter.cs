using Enroll.Device.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// Keeps the state folder's health file in step with <see cref="DeviceHealth"/>: written at start, after each change (at
/// most twice a second), and with <c>running: false</c> at a clean stop, so another process can tell which fault this one
/// is in.
/// </summary>
internal sealed class DeviceHealthReporter : BackgroundService
{
    private static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(500);
    private readonly DeviceHealth _health;
    private readonly string _statePath;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _changed = new(0, 1);
    private string? _lastFailure;

    public DeviceHealthReporter(DeviceHealth health, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<DeviceHealthReporter> logger)
    {
        _health = health;
        _statePath = options.Value.StatePath;
        _timeProvider = timeProvider;
        _logger = logger;
        _health.Changed += (_, _) =>
        {
            if (_changed.CurrentCount == 0)
            {
                try
                {
                    _changed.Release();
                }
                catch (SemaphoreFullException)
                {
                    // Another change already woke the writer.
                }
            }
        };
    }

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // Written before the host goes on (ExecuteAsync runs on the thread pool): the file is allocated while there is
        // space, so a disk that fills up later can still be told about.
        Write(running: true);
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (true)
            {
                await _changed.WaitAsync(stoppingToken).ConfigureAwait(false);
                Write(running: true);
                await Task.Delay(MinInterval, _timeProvider, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        Write(running: false);
    }

    public override void Dispose()
    {
        _changed.Dispose();
        base.Dispose();
    }

    private void Write(bool running)
    {
        try
        {
            Directory.CreateDirectory(_statePath);
            DeviceHealthFile.Write(_statePath, new DeviceHealthSnapshot
            {
                Pid = Environment.ProcessId,
                UpdatedAt = _timeProvider.GetUtcNow(),
                Running = running,
                Faults = _health.Faults,
            });
            _lastFailure = null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Said once per distinct reason: a full disk must not turn into a log line twice a second.
            if (_lastFailure != ex.Message)
            {
                _lastFailure = ex.Message;
                Log.HealthFileFailed(_logger, DeviceHealthFile.PathIn(_statePath), ex.Message);
            }
        }
    }
}
