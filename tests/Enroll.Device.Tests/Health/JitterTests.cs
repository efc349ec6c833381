namespace Enroll.Device.Tests.Health;

public sealed class JitterTests
{
    [Theory]
    [InlineData(0.0, 100)]
    [InlineData(0.5, 110)]
    [InlineData(0.999, 119.98)]
    public void Extend_LengthensTheWaitByUpToTheShare_NeverShortensIt(double random, double expectedSeconds)
    {
        var wait = new Jitter(() => random).Extend(TimeSpan.FromSeconds(100), 0.2);

        Assert.Equal(expectedSeconds, wait.TotalSeconds, 6);
    }

    [Theory]
    [InlineData(0.0, 5)]
    [InlineData(0.5, 7.5)]
    [InlineData(0.999, 9.995)]
    public void Spread_KeepsTheDelayBetweenHalfAndWhole(double random, double expectedSeconds)
    {
        var delay = new Jitter(() => random).Spread(TimeSpan.FromSeconds(10));

        Assert.Equal(expectedSeconds, delay.TotalSeconds, 6);
    }

    [Fact]
    public void Backoff_DoublesPerAttempt_UpToTheCap_ThenSpreads()
    {
        var whole = new Jitter(() => 1.0);

        Assert.Equal(TimeSpan.FromSeconds(1), whole.Backoff(1, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30)));
        Assert.Equal(TimeSpan.FromSeconds(8), whole.Backoff(4, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30)));
        Assert.Equal(TimeSpan.FromSeconds(30), whole.Backoff(10, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30)));
    }
}
