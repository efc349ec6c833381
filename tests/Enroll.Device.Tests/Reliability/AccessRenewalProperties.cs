using FsCheck;
using FsCheck.Xunit;

namespace Enroll.Device.Tests.Reliability;

public sealed class AccessRenewalProperties
{
    private static readonly DateTimeOffset Issued = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan RenewBefore = TimeSpan.FromMinutes(5);

    private static TimeSpan Lifetime(PositiveInt seconds) => TimeSpan.FromSeconds(1 + (seconds.Get % (30 * 24 * 3600)));

    private static double Random(NormalFloat seed) => Math.Abs(seed.Get % 1.0);

    [Property(MaxTest = 500)]
    public bool Renewal_FallsBetweenSeventyFiveAndEightyFivePercentOfTheLifetime(PositiveInt seconds, NormalFloat seed)
    {
        var lifetime = Lifetime(seconds);
        var at = RefreshSchedule.AccessRenewAt(Issued, Issued + lifetime, RenewBefore, Random(seed));
        return at >= Issued + (lifetime * 0.75) - TimeSpan.FromTicks(1) && at <= Issued + (lifetime * 0.85) + TimeSpan.FromTicks(1) && at < Issued + lifetime;
    }

    [Property(MaxTest = 500)]
    public bool Renewal_IsNeverSoonerThanTheFloorAfterIssue(PositiveInt seconds, NormalFloat seed)
    {
        var lifetime = Lifetime(seconds);
        var floor = lifetime / 2 < RefreshSchedule.MinRenewAfter ? lifetime / 2 : RefreshSchedule.MinRenewAfter;
        return RefreshSchedule.AccessRenewAt(Issued, Issued + lifetime, RenewBefore, Random(seed)) >= Issued + floor;
    }

    [Property(MaxTest = 500)]
    public bool Renewal_LeavesAtLeastTheMarginWhenItIsAtMostAFifthOfTheLifetime(PositiveInt seconds, NormalFloat seed)
    {
        var lifetime = Lifetime(seconds);
        var at = RefreshSchedule.AccessRenewAt(Issued, Issued + lifetime, RenewBefore, Random(seed));
        return lifetime * 0.2 < RenewBefore || Issued + lifetime - at >= RenewBefore - TimeSpan.FromTicks(1);
    }

    [Property(MaxTest = 500)]
    public bool Jitter_SpreadsAFleetOverAtLeastFivePercentOfTheLifetime(PositiveInt seconds)
    {
        var lifetime = Lifetime(seconds);
        var earliest = RefreshSchedule.AccessRenewAt(Issued, Issued + lifetime, RenewBefore, 0.0);
        var middle = RefreshSchedule.AccessRenewAt(Issued, Issued + lifetime, RenewBefore, 0.5);
        return middle - earliest >= (lifetime * 0.05) - TimeSpan.FromTicks(2);
    }
}
