namespace Enroll.Device;

/// <summary>When to refresh a token: when about 20 % of its lifetime remains, spread by jitter.</summary>
internal static class RefreshSchedule
{
    /// <summary>The share of a token's lifetime used before it is refreshed (before jitter).</summary>
    public const double RefreshAtShare = 0.8;

    /// <summary>How far jitter moves the refresh, as a share of the lifetime in each direction.</summary>
    public const double JitterShare = 0.05;

    /// <summary>
    /// The refresh time for a token issued at <paramref name="issuedAt"/> expiring at <paramref name="expiresAt"/>, with
    /// <paramref name="random"/> in [0, 1) choosing where in the jitter window it lands (0.5 = no jitter).
    /// </summary>
    public static DateTimeOffset RefreshAt(DateTimeOffset issuedAt, DateTimeOffset expiresAt, double random)
    {
        var lifetime = expiresAt - issuedAt;
        if (lifetime <= TimeSpan.Zero)
        {
            return issuedAt;
        }

        var share = RefreshAtShare + ((random - 0.5) * 2 * JitterShare);
        return issuedAt + (lifetime * share);
    }
}
