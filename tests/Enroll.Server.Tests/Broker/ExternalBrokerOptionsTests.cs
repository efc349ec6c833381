using Enroll.Server.Broker.External;

namespace Enroll.Server.Tests.Broker;

/// <summary>The external broker's client ID and session expiry settings: checked at start, with one line naming the problem.</summary>
public sealed class ExternalBrokerOptionsTests
{
    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("wild+card")]
    [InlineData("level/name")]
    [InlineData("#")]
    public void AnUnusableBrokerClientId_IsRefusedNamingTheAllowedCharacters(string id)
    {
        var problem = Assert.Single(EnrollServerOptionsValidation.Problems(new EnrollServerOptions { BrokerClientId = id }));

        Assert.Contains($"the broker client ID '{id}' is not valid", problem, StringComparison.Ordinal);
        Assert.Contains("1-100 letters, digits", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void ABrokerClientIdOfMoreThan100Characters_IsRefused() =>
        Assert.Single(EnrollServerOptionsValidation.Problems(new EnrollServerOptions { BrokerClientId = new string('a', 101) }));

    [Theory]
    [InlineData(30)]
    [InlineData(366 * 24 * 3600)]
    public void ABrokerSessionExpiryOutOfRange_IsRefusedNamingTheSetting(int seconds)
    {
        var problem = Assert.Single(EnrollServerOptionsValidation.Problems(new EnrollServerOptions { BrokerSessionExpiry = TimeSpan.FromSeconds(seconds) }));

        Assert.Contains("broker session expiry (--broker-session-expiry)", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void TheClientIdStem_IsTheConfiguredId_OrStableForTheMachine()
    {
        Assert.Equal("eu-1", ExternalBrokerConnection.ClientIdStem(new EnrollServerOptions { BrokerClientId = "eu-1" }));
        Assert.Equal($"$enroll-server-{Environment.MachineName}", ExternalBrokerConnection.ClientIdStem(new EnrollServerOptions()));
        Assert.Empty(EnrollServerOptionsValidation.Problems(new EnrollServerOptions { BrokerClientId = "enroll-server-eu-west.1:a_b" }));
    }
}
