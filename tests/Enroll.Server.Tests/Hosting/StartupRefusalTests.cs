using System.Net;
using System.Net.Sockets;
using Enroll.Testing;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Hosting;

/// <summary>
/// One server per port and per data folder, and settings that make no sense: each refused at start with a one-line
/// <see cref="ServerStartException"/> naming the port, the folder's owner or the setting.
/// </summary>
public sealed class StartupRefusalTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-startup");

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task SecondServer_OnTheSameMqttPort_IsRefusedNamingThePort()
    {
        await using var first = await TestServer.StartAsync(output);

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, mqttPort: first.MqttPort));

        Assert.Equal(ServerStartProblem.PortInUse, refused.Problem);
        Assert.Equal(first.MqttPort, refused.Port);
        Assert.Contains($"MQTT port {first.MqttPort} on 127.0.0.1 is already in use", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', refused.Message);
    }

    [Fact]
    public async Task Server_OnABusyHttpPort_IsRefusedNamingThePort()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, o => o.HttpPort = port));

        Assert.Equal(ServerStartProblem.PortInUse, refused.Problem);
        Assert.Equal(port, refused.Port);
        Assert.Contains($"HTTP port {port} on 127.0.0.1 is already in use", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Server_OnABusyHttpPort_LogsNoStackTrace_TheExceptionSaysItAll()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var log = new CountingLoggerProvider();

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => EnrollServerHost.StartAsync(
            new EnrollServerOptions { DataDirectory = _folder.Combine("busy-http"), MqttPort = 0, HttpPort = ((IPEndPoint)squatter.LocalEndpoint).Port },
            logging => logging.AddProvider(log).SetMinimumLevel(LogLevel.Information).AddFilter("Microsoft", LogLevel.Warning)));

        Assert.Null(refused.InnerException);
        Assert.DoesNotContain(log.Lines, l => l.HasException);
    }

    [Fact]
    public async Task Server_OnABusyMqttTlsPort_IsRefusedNamingThePort()
    {
        using var ca = new TestCertificates(_folder.Combine("pki"));
        var certificate = ca.IssueServer();
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, o =>
        {
            o.TlsCertificateFile = certificate.CertificatePath;
            o.TlsKeyFile = certificate.KeyPath;
            o.MqttTlsPort = port;
            o.HttpsPort = 0;
        }));

        Assert.Equal(ServerStartProblem.PortInUse, refused.Problem);
        Assert.Contains($"MQTT-over-TLS port {port}", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SecondServer_OnTheSameDataFolder_IsRefusedNamingTheHolder_AndTheFolderIsFreeAgainAfterStop()
    {
        var data = _folder.Combine("data");
        var first = await TestServer.StartAsync(output, dataDirectory: data);

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, dataDirectory: data));

        Assert.Equal(ServerStartProblem.DataFolderInUse, refused.Problem);
        Assert.Equal(Environment.ProcessId, refused.HolderProcessId);
        Assert.Contains($"process {Environment.ProcessId}", refused.Message, StringComparison.Ordinal);

        await first.DisposeAsync();
        await using var again = await TestServer.StartAsync(output, dataDirectory: data);
        Assert.Equal(Path.GetFullPath(data), again.DataDirectory);
    }

    [Theory]
    [InlineData("mqtt-port", "the MQTT port (--mqtt-port) 99999 is not a TCP port: use 1-65535, or 0 to pick a free one")]
    [InlineData("http-port", "the HTTP port (--http-port) -1 is not a TCP port")]
    [InlineData("access-short", "the access token lifetime (--access-token-lifetime) 30s is out of range: use 1m to 30d")]
    [InlineData("access-above-registration", "the access token lifetime (2d) must not be longer than the registration token lifetime (1d)")]
    [InlineData("registration-short", "the registration token lifetime (--registration-token-lifetime) 5m is out of range: use 1h to 3650d")]
    public async Task Server_WithASettingOutOfRange_IsRefusedBeforeItOpensAnything(string setting, string expected)
    {
        var data = _folder.Combine("never-created");
        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, o =>
        {
            o.DataDirectory = data;
            switch (setting)
            {
                case "mqtt-port": o.MqttPort = 99999; break;
                case "http-port": o.HttpPort = -1; break;
                case "access-short": o.AccessTokenLifetime = TimeSpan.FromSeconds(30); break;
                case "access-above-registration": o.AccessTokenLifetime = TimeSpan.FromDays(2); o.RegistrationTokenLifetime = TimeSpan.FromDays(1); break;
                case "registration-short": o.RegistrationTokenLifetime = TimeSpan.FromMinutes(5); o.AccessTokenLifetime = TimeSpan.FromMinutes(1); break;
            }
        }));

        Assert.Equal(ServerStartProblem.InvalidOptions, refused.Problem);
        Assert.Contains(expected, refused.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(data));
    }
}
