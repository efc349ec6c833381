using Enroll.Device;

namespace Enroll.Testing;

/// <summary>Waits for a device status without sleeping: completes on the state-change event, or times out.</summary>
public static class StatusWaiting
{
    public static async Task<DeviceStatus> WaitForStatusAsync(this RegistrationService registration, Func<DeviceStatus, bool> predicate, TimeSpan? timeout = null)
    {
        var reached = new TaskCompletionSource<DeviceStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnChanged(object? sender, DeviceStatusChangedEventArgs e)
        {
            if (predicate(e.Current))
            {
                reached.TrySetResult(e.Current);
            }
        }

        registration.StatusChanged += OnChanged;
        try
        {
            if (predicate(registration.Status))
            {
                return registration.Status;
            }

            var limit = timeout ?? TimeSpan.FromSeconds(15);
            try
            {
                return await reached.Task.WaitAsync(limit);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"the device did not reach the expected status within {limit}; it is {registration.Status}");
            }
        }
        finally
        {
            registration.StatusChanged -= OnChanged;
        }
    }
}
