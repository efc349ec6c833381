using Enroll.Device;

namespace Enroll.Cli.Infrastructure;

/// <summary>
/// Shows on standard error that a registration waits for an operator: the operation ID and the command that approves it
/// at once, then how long it has waited every 30 seconds.
/// </summary>
internal sealed class ApprovalProgress : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);
    private readonly RegistrationService _registration;
    private readonly Output _output;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _lock = new();
    private string? _operationId;
    private DateTimeOffset _since;
    private ITimer? _timer;

    public ApprovalProgress(RegistrationService registration, Output output, TimeProvider timeProvider)
    {
        _registration = registration;
        _output = output;
        _timeProvider = timeProvider;
        _registration.StatusChanged += OnStatusChanged;
    }

    private void OnStatusChanged(object? sender, DeviceStatusChangedEventArgs e)
    {
        lock (_lock)
        {
            if (e.Current.State == DeviceState.Pending && e.Current.OperationId is { } operation && operation != _operationId)
            {
                _operationId = operation;
                _since = _timeProvider.GetUtcNow();
                _output.Error.WriteLine($"Operation {operation} is waiting for an operator's approval (enroll ops approve {operation}).");
                _timer?.Dispose();
                _timer = _timeProvider.CreateTimer(_ => Tick(), null, Interval, Interval);
            }
            else if (e.Current.State is DeviceState.Registered or DeviceState.Failed && _operationId is not null)
            {
                _output.Error.WriteLine(e.Current.State == DeviceState.Registered ? $"Operation {_operationId} approved." : $"Operation {_operationId}: {e.Current.Failure}");
                _operationId = null;
                _timer?.Dispose();
                _timer = null;
            }
        }
    }

    private void Tick()
    {
        lock (_lock)
        {
            if (_operationId is not null)
            {
                var waited = _timeProvider.GetUtcNow() - _since;
                _output.Error.WriteLine($"Still waiting for approval of {_operationId} ({(int)waited.TotalMinutes}m {waited.Seconds:00}s)...");
            }
        }
    }

    public void Dispose()
    {
        _registration.StatusChanged -= OnStatusChanged;
        lock (_lock)
        {
            _timer?.Dispose();
            _timer = null;
        }
    }
}
