namespace Enroll.Device;

/// <summary>
/// When to refresh a Registration Token or renew an access token: when about 20 % of its lifetime remains, spread by
/// jitter (±5 % of the lifetime) so a fleet registered in one storm does not come back in one window.
/// </summary>
internal static class RefreshSchedule
{
    /// <summary>An access token is never renewed sooner than this after it was issued (or half its lifetime, if shorter).</summary>
    public static readonly TimeSpan MinRenewAfter = TimeSpan.FromSeconds(30);

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

    /// <summary>
    /// The renewal time of an access token issued at <paramref name="issuedAt"/> expiring at <paramref name="expiresAt"/>:
    /// the refresh time of <see cref="RefreshAt"/> (75-85 % of the lifetime), but at least <paramref name="renewBefore"/>
    /// before expiry where that is at most 20 % of the lifetime, and never sooner than <see cref="MinRenewAfter"/> (or half
    /// the lifetime) after issue. The renewal point thus scales with the lifetime: a 2-minute token is renewed after about
    /// 90 seconds, not at once because it has less than a fixed margin left.
    /// </summary>
    public static DateTimeOffset AccessRenewAt(DateTimeOffset issuedAt, DateTimeOffset expiresAt, TimeSpan renewBefore, double random)
    {
        var lifetime = expiresAt - issuedAt;
        if (lifetime <= TimeSpan.Zero)
        {
            return issuedAt;
        }

        var margin = renewBefore < lifetime * (1 - RefreshAtShare) ? renewBefore : lifetime * (1 - RefreshAtShare);
        var byShare = RefreshAt(issuedAt, expiresAt, random);
        var byMargin = expiresAt - margin;
        var at = byShare < byMargin ? byShare : byMargin;
        var floor = issuedAt + (MinRenewAfter < lifetime / 2 ? MinRenewAfter : lifetime / 2);
        return at > floor ? at : floor;
    }
}
