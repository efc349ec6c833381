namespace Enroll.Device.State;

/// <summary>
/// Wakes a loop when another process commits to a state file. Writes from this process wake their loops directly; a
/// CLI command run beside the agent (<c>enroll device send</c>, <c>twin report</c>) can only be seen in the file. The
/// watch looks at the file's change version once per interval on a periodic timer and calls back only when it moved, so
/// an idle device neither reads its tables nor allocates on every tick (an idle agent's memory stays flat).
/// </summary>
internal static class StateChangeWatch
{
    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> stops it or the file is closed. A version that cannot be read (the file is locked or
    /// being replaced) counts as a change: the loop is woken, does its own read, and reports what fails there.
    /// </summary>
    public static async Task RunAsync(Func<long> version, Action changed, TimeSpan interval, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval, timeProvider);
        long? seen = null;
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                long now;
                try
                {
                    now = version();
                }
                catch (Exception ex) when (ex is not OperationCanceledException and not ObjectDisposedException)
                {
                    seen = null;
                    changed();
                    continue;
                }

                // The first tick always wakes: a commit between the loop's first read and the watch's start is not missed.
                if (seen != now)
                {
                    changed();
                }

                seen = now;
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException)
        {
            // The state file was closed: the device is stopping.
        }
    }
}
