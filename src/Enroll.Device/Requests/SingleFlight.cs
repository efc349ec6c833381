namespace Enroll.Device.Requests;

/// <summary>
/// Runs at most one operation at a time: callers arriving while it runs share its result instead of starting another.
/// Used so that many callers hitting an expired token cause exactly one refresh.
/// </summary>
internal sealed class SingleFlight<T>
{
    private readonly Lock _lock = new();
    private Task<T>? _current;

    public Task<T> RunAsync(Func<Task<T>> operation)
    {
        lock (_lock)
        {
            if (_current is { IsCompleted: false } running)
            {
                return running;
            }

            _current = Start(operation);
            return _current;
        }
    }

    private static async Task<T> Start(Func<Task<T>> operation)
    {
        await Task.Yield();
        return await operation().ConfigureAwait(false);
    }
}
