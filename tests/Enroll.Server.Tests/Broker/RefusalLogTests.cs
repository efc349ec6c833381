using Enroll.Testing;
using Microsoft.Extensions.Logging;
using MQTTnet;

namespace Enroll.Server.Tests.Broker;

/// <summary>A client retrying bad credentials as fast as it can is refused every time, and logged once per interval.</summary>
public sealed class RefusalLogTests : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-refusals");

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task RepeatedBadCredentials_AreAllRefused_AndLoggedOncePerInterval()
    {
        var log = new CountingLoggerProvider();
        await using var host = await EnrollServerHost.StartAsync(
            new EnrollServerOptions { DataDirectory = _folder.Path, MqttPort = 0, HttpPort = 0 },
            logging => logging.AddProvider(log).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning));

        for (var n = 0; n < 40; n++)
        {
            Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await RawMqttClient.TryConnectAsync(host.MqttEndpoint, "guesser", "dev_guess", "not-a-token"));
        }

        Assert.Equal(1, log.Count(3));
        Assert.Contains("(1 refusal(s) since the last report)", log.Lines.Single(l => l.EventId == 3).Text, StringComparison.Ordinal);
    }
}
