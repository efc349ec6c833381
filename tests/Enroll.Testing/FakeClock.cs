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

    /// <summary>
    /// Advances by <paramref name="step"/> until <paramref name="reached"/> holds, then stops advancing. Use it where the
    /// clock must not run on after the step that mattered: a second step would time out the very attempt it started if
    /// its answer is slow to arrive on a loaded machine.
    /// </summary>
    public static async Task AdvanceUntilAsync(this FakeTimeProvider time, TimeSpan step, Func<bool> reached, int maxSteps = 20)
    {
        for (var i = 0; i < maxSteps && !reached(); i++)
        {
            time.Advance(step);
            for (var poll = 0; poll < 10 && !reached(); poll++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(5));
            }
        }

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!reached())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"The awaited progress did not show after {maxSteps} steps of {step}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }
}
