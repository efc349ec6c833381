using Enroll.Cli.Infrastructure;

namespace Enroll.Cli.Tests.Infrastructure;

public sealed class DurationsTests
{
    [Theory]
    [InlineData("90s", 90)]
    [InlineData("1.5m", 90)]
    [InlineData("12h", 43_200)]
    [InlineData("30d", 2_592_000)]
    [InlineData("2w", 1_209_600)]
    [InlineData("00:01:30", 90)]
    public void Parse_ReadsEachUnit(string text, double seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), Durations.Parse(text));

    [Theory]
    [InlineData("0")]
    [InlineData("0s")]
    [InlineData("-5s")]
    [InlineData("10x")]
    [InlineData("s")]
    [InlineData("")]
    public void Parse_RefusesWhatIsNotAPositiveDuration(string text)
    {
        var error = Assert.Throws<FormatException>(() => Durations.Parse(text));
        Assert.Contains("write it like 90s", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("0s")]
    [InlineData("00:00:00")]
    public void Parse_AcceptsZero_WhereZeroMeansNone(string text) =>
        Assert.Equal(TimeSpan.Zero, Durations.Parse(text, allowZero: true));

    [Fact]
    public void Parse_RefusesNegative_EvenWhereZeroIsAllowed() =>
        Assert.Throws<FormatException>(() => Durations.Parse("-1s", allowZero: true));
}
