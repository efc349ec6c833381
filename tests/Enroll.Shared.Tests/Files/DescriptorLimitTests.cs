using Enroll.Shared.Files;

namespace Enroll.Shared.Tests.Files;

public sealed class DescriptorLimitTests
{
    [Theory]
    [InlineData(20_000L, 100, 16_000)] // 80 % of the limit
    [InlineData(1_024L, 850, 46)] // what is left below the limit, less the reserve
    [InlineData(200L, 190, 16)] // never fewer than 16
    [InlineData(10_000_000L, 100, DescriptorLimit.Fallback)] // never more than the fallback
    public void ConnectionCap_LeavesRoomBelowTheLimit(long limit, int inUse, int expected) =>
        Assert.Equal(expected, DescriptorLimit.ConnectionCap(limit, inUse));

    [Fact]
    public void ConnectionCap_WithoutALimit_IsTheFallback() =>
        Assert.Equal(DescriptorLimit.Fallback, DescriptorLimit.ConnectionCap(null, 100));

    [Fact]
    public void ThisProcess_HasALimitAboveWhatItHasOpen()
    {
        var limit = DescriptorLimit.Read();
        var inUse = DescriptorLimit.InUse();
        Assert.NotNull(limit);
        Assert.NotNull(inUse);
        Assert.InRange(inUse!.Value, 1, limit!.Value);
    }
}
