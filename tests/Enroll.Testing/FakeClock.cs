using Microsoft.Extensions.Time.Testing;

namespace Enroll.Testing;

/// <summary>
/// Helpers for driving code whose waits go through a <see cref="FakeTimeProvider"/>. Code often announces a wait just
/// before it starts the timer; advancing between the two would be lost, so these advance again (by the same step) until
/// the expected progress shows — bounded, and without ever sleeping on the fake clock's behalf.
/// </summary>
public static class FakeClock
{
    public static async Task<T> AdvanceUntilAsync<T>(this FakeTimeProvider time, TimeSpan step, Task<T> progress, int maxSteps = 20)
    {
        for (var i = 0; i < maxSteps && !progress.IsCompleted; i++)
        {
            time.Advance(step);
            await Task.WhenAny(progress, Task.Delay(TimeSpan.FromMilliseconds(50)));
        }

        return await progress.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
