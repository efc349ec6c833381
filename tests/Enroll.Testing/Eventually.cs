namespace Enroll.Testing;

/// <summary>
/// Waits for a condition on state another component owns and announces no event for (rows in a database, files on
/// disk): checks it, then re-checks at a short interval until it holds or the timeout passes.
/// </summary>
public static class Eventually
{
    public static async Task<T> ReturnsAsync<T>(Func<Task<T>> probe, Func<T, bool> holds, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        var value = await probe();
        while (!holds(value))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{what} did not happen within {timeout}; last value: {value}");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(25));
            value = await probe();
        }

        return value;
    }
}
