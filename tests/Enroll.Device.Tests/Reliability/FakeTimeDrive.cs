using Microsoft.Extensions.Time.Testing;

namespace Enroll.Device.Tests.Reliability;

/// <summary>
/// Moves a fake clock through a bounded window in small steps, giving the device's loops a moment of real time after each
/// step to react. A loop that waits on the clock makes a bounded number of attempts over the window; a hot loop (one that
/// does not wait) makes thousands in the same real time, which is what the tests count.
/// </summary>
internal static class FakeTimeDrive
{
    public static async Task DriveAsync(this FakeTimeProvider time, TimeSpan window, TimeSpan step)
    {
        for (var elapsed = TimeSpan.Zero; elapsed < window; elapsed += step)
        {
            time.Advance(step);
            await Task.Delay(TimeSpan.FromMilliseconds(3));
        }
    }
}
