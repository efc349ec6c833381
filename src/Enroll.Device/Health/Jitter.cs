namespace Enroll.Device;

/// <summary>
/// The one jitter formula of the device library, over an injected random source so tests can drive it (as Polly's retry
/// strategy takes a randomizer next to its <see cref="TimeProvider"/>).
/// </summary>
internal sealed class Jitter
{
    private readonly Func<double> _next;

    /// <param name="next">Returns a number in [0, 1).</param>
    public Jitter(Func<double> next) => _next = next;

    /// <summary>A jitter that always answers the middle of its range: for tests and for <c>UseJitter = false</c>.</summary>
    public static Jitter None { get; } = new(() => 0.5);

    /// <summary>A number in [0, 1).</summary>
    public double Next() => _next();

    /// <summary><paramref name="delay"/> spread over [delay / 2, delay): "equal jitter", so a fleet never waits in step.</summary>
    public TimeSpan Spread(TimeSpan delay) => delay * (0.5 + (_next() * 0.5));

    /// <summary>
    /// <paramref name="wait"/> lengthened at random by up to <paramref name="share"/> of itself: for a wait the server
    /// chose, which jitter may extend but never shorten.
    /// </summary>
    public TimeSpan Extend(TimeSpan wait, double share) => wait + (wait * (_next() * share));

    /// <summary>
    /// The wait before attempt <paramref name="attempt"/> + 1: <paramref name="initial"/> doubling per attempt, capped at
    /// <paramref name="max"/>, then spread.
    /// </summary>
    public TimeSpan Backoff(int attempt, TimeSpan initial, TimeSpan max)
    {
        var exponent = Math.Clamp(attempt - 1, 0, 30);
        var ticks = Math.Min(max.Ticks, initial.Ticks * Math.Pow(2, exponent));
        return Spread(TimeSpan.FromTicks((long)ticks));
    }
}
