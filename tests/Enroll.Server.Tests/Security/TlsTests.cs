using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Enroll.Device;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

/// <summary>
/// TLS on the embedded broker and the API: devices check the server's certificate against a configured CA and host
/// name, and a client certificate from the configured CA registers a device without a Provisioning Token (mTLS).
/// </summary>
public sealed class TlsTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-tls");

    public void Dispose() => _folder.Dispose();

    private TestCertificates Authority(string name = "Enroll Test CA") => new(_folder.Combine("pki"), name);

    private Task<TestServer> StartTlsServerAsync(PemFiles certificate, string? clientCa = null) => TestServer.StartAsync(output, o =>
    {
        o.TlsCertificateFile = certificate.CertificatePath;
        o.TlsKeyFile = certificate.KeyPath;
        o.ClientCaFile = clientCa;
        o.MqttTlsPort = 0;
        o.HttpsPort = 0;
    });

    private static Uri Tls(TestServer server) => server.Host.MqttTlsEndpoint ?? throw new InvalidOperationException("no TLS endpoint");

    [Fact]
    public async Task Device_RegistersOverTls_WhenTheServerCertificateChainsToTheConfiguredCa()
    {
        using var ca = Authority();
        var serverCertificate = ca.IssueServer();
        await using var server = await StartTlsServerAsync(serverCertificate);
        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(Tls(server), "tls-device", _folder.Combine("tls-device"), token.Token, output, o => o.TlsCaFile = ca.CaPath);

        var identity = await device.Registration.StartAsync();

        Assert.StartsWith("dev_", identity.DeviceId, StringComparison.Ordinal);
        Assert.Equal("mqtts", Tls(server).Scheme);
    }

    [Fact]
    public async Task Device_RefusesAServerCertificateFromAnotherCa_WithAClearError_AndDoesNotRetry()
    {
        using var ca = Authority();
        using var otherCa = Authority("Other CA");
        var serverCertificate = otherCa.IssueServer();
        await using var server = await StartTlsServerAsync(serverCertificate);
        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(Tls(server), "wrong-ca", _folder.Combine("wrong-ca"), token.Token, output, o =>
        {
            o.TlsCaFile = ca.CaPath;
            o.MaxAttempts = 5;
        });

        var error = await Assert.ThrowsAsync<EnrollConnectionException>(() => device.Registration.StartAsync());

        Assert.True(error.CertificateRefused);
        Assert.Contains("not signed by the configured CA", error.Message, StringComparison.Ordinal);
        Assert.Empty(await server.ListDevicesAsync());
    }

    [Fact]
    public async Task Device_RefusesAServerCertificateForAnotherHostName()
    {
        using var ca = Authority();
        var serverCertificate = ca.IssueServer(dnsNames: ["broker.example.com"], addresses: []);
        await using var server = await StartTlsServerAsync(serverCertificate);
        var token = await server.CreateTokenAsync();
        await using var device = DeviceHarness.Create(Tls(server), "wrong-name", _folder.Combine("wrong-name"), token.Token, output, o => o.TlsCaFile = ca.CaPath);

        var error = await Assert.ThrowsAsync<EnrollConnectionException>(() => device.Registration.StartAsync());

        Assert.True(error.CertificateRefused);
        Assert.Contains("it is for 'broker.example.com', not '127.0.0.1'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Device_RefusesAnExpiredServerCertificate()
    {
        using var ca = Authority();
        var serverCertificate = ca.IssueServer(notAfter: DateTimeOffset.UtcNow.AddHours(-1));
        await using var server = await StartTlsServerAsync(serverCertificate);
        await using var device = DeviceHarness.Create(Tls(server), "expired", _folder.Combine("expired"), "unused", output, o => o.TlsCaFile = ca.CaPath);

        var error = await Assert.ThrowsAsync<EnrollConnectionException>(() => device.Registration.StartAsync());

        Assert.Contains("expired", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Device_WithAClientCertificateFromTheClientCa_RegistersWithoutAToken_InTheCertificatesOrg()
    {
        using var ca = Authority();
        using var clientCa = Authority("Device CA");
        var serverCertificate = ca.IssueServer();
        var clientCertificate = clientCa.IssueClient("mtls-device", org: "factory-7");
        await using var server = await StartTlsServerAsync(serverCertificate, clientCa.CaPath);
        await using var device = DeviceHarness.Create(Tls(server), "mtls-device", _folder.Combine("mtls-device"), provisioningToken: null, output, o =>
        {
            o.TlsCaFile = ca.CaPath;
            o.ClientCertificateFile = clientCertificate.CertificatePath;
            o.ClientKeyFile = clientCertificate.KeyPath;
        });

        var identity = await device.Registration.StartAsync();

        var stored = await server.GetDeviceAsync(identity.DeviceId);
        Assert.Equal("factory-7", stored.OrgId);
        Assert.Equal("mtls-device", stored.ClientId);
    }

    [Fact]
    public async Task ClientCertificate_IssuedToAnotherClientId_IsRefusedAtConnect()
    {
        using var ca = Authority();
        using var clientCa = Authority("Device CA");
        var serverCertificate = ca.IssueServer();
        var someoneElses = clientCa.IssueClient("device-a");
        await using var server = await StartTlsServerAsync(serverCertificate, clientCa.CaPath);
        await using var device = DeviceHarness.Create(Tls(server), "device-b", _folder.Combine("device-b"), provisioningToken: null, output, o =>
        {
            o.TlsCaFile = ca.CaPath;
            o.ClientCertificateFile = someoneElses.CertificatePath;
            o.ClientKeyFile = someoneElses.KeyPath;
        });

        var error = await Assert.ThrowsAsync<EnrollConnectionException>(() => device.Registration.StartAsync());

        Assert.True(error.CredentialsRefused);
        Assert.Contains("ClientIdentifierNotValid", error.Message, StringComparison.Ordinal);
        Assert.Empty(await server.ListDevicesAsync());
    }

    [Fact]
    public async Task ClientCertificate_FromAnUntrustedCa_FailsTheHandshake_AndRegistersNothing()
    {
        using var ca = Authority();
        using var clientCa = Authority("Device CA");
        using var rogueCa = Authority("Rogue CA");
        var serverCertificate = ca.IssueServer();
        var rogue = rogueCa.IssueClient("rogue-device");
        await using var server = await StartTlsServerAsync(serverCertificate, clientCa.CaPath);
        await using var device = DeviceHarness.Create(Tls(server), "rogue-device", _folder.Combine("rogue"), provisioningToken: null, output, o =>
        {
            o.TlsCaFile = ca.CaPath;
            o.ClientCertificateFile = rogue.CertificatePath;
            o.ClientKeyFile = rogue.KeyPath;
            o.MaxAttempts = 2;
        });

        // The server ends the handshake; the device sees its connection closed on every attempt.
        var error = await Assert.ThrowsAnyAsync<EnrollException>(() => device.Registration.StartAsync());

        Assert.Contains("cannot connect", error.Message, StringComparison.Ordinal);
        Assert.Empty(await server.ListDevicesAsync());
    }

    [Fact]
    public async Task TlsWithoutAClientCertificate_StillNeedsAToken()
    {
        using var ca = Authority();
        using var clientCa = Authority("Device CA");
        var serverCertificate = ca.IssueServer();
        await using var server = await StartTlsServerAsync(serverCertificate, clientCa.CaPath);
        await using var device = DeviceHarness.Create(Tls(server), "no-cert", _folder.Combine("no-cert"), provisioningToken: null, output, o => o.TlsCaFile = ca.CaPath);

        var error = await Assert.ThrowsAsync<EnrollServerException>(() => device.Registration.StartAsync());

        Assert.Equal("unauthorized", error.Code);
    }

    [Fact]
    public async Task NoPlaintext_ServesOnlyTls_OnMqttAndHttp()
    {
        using var ca = Authority();
        var serverCertificate = ca.IssueServer();
        var plainMqtt = FreeLoopbackPort();
        var plainHttp = FreeLoopbackPort();
        await using var host = await EnrollServerHost.StartAsync(
            new EnrollServerOptions
            {
                DataDirectory = _folder.Combine("no-plaintext"),
                MqttPort = plainMqtt,
                HttpPort = plainHttp,
                MqttTlsPort = 0,
                HttpsPort = 0,
                TlsCertificateFile = serverCertificate.CertificatePath,
                TlsKeyFile = serverCertificate.KeyPath,
                NoPlaintext = true,
            });

        Assert.Equal("mqtts", host.MqttEndpoint.Scheme);
        Assert.Equal("https", host.HttpEndpoint.Scheme);
        await Assert.ThrowsAnyAsync<SocketException>(() => ConnectAsync(plainMqtt));
        await Assert.ThrowsAnyAsync<SocketException>(() => ConnectAsync(plainHttp));

        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(ca.CaPath);
        using var handler = new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, certificate, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.AddRange(roots);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return certificate is not null && chain.Build(certificate);
            },
        };
        using var https = new HttpClient(handler);
        var health = await https.GetAsync(new Uri(host.HttpEndpoint, "/healthz"));
        Assert.True(health.IsSuccessStatusCode);
    }

    [Fact]
    public async Task ConsoleSignIn_OverHttps_SetsASecureCookie_AndOverPlainHttpDoesNot()
    {
        using var ca = Authority();
        await using var server = await StartTlsServerAsync(ca.IssueServer());
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(ca.CaPath);
        using var handler = new HttpClientHandler
        {
            UseCookies = false,
            ServerCertificateCustomValidationCallback = (_, certificate, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.AddRange(roots);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return certificate is not null && chain.Build(certificate);
            },
        };
        using var client = new HttpClient(handler);
        var body = System.Text.Json.JsonSerializer.Serialize(new { key = server.AdminKey });

        async Task<string> SignInAsync(Uri endpoint)
        {
            using var response = await client.PostAsync(new Uri(endpoint, "/api/session"), new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return string.Join("; ", response.Headers.GetValues("Set-Cookie"));
        }

        var overTls = await SignInAsync(server.Host.HttpsEndpoint ?? throw new InvalidOperationException("no HTTPS endpoint"));
        var plain = await SignInAsync(server.HttpEndpoint);
        output.WriteLine(overTls);

        Assert.Contains("secure", overTls.Split(';', StringSplitOptions.TrimEntries), StringComparer.OrdinalIgnoreCase);
        Assert.Contains("httponly", overTls, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", overTls, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("secure", plain.Split(';', StringSplitOptions.TrimEntries), StringComparer.OrdinalIgnoreCase);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Server_RefusesToStart_WithAWorldReadableTlsKey()
    {
        using var ca = Authority();
        var serverCertificate = ca.IssueServer();
        File.SetUnixFileMode(serverCertificate.KeyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => StartTlsServerAsync(serverCertificate));

        Assert.Contains("can be read by other users", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Server_RefusesNoPlaintextWithoutACertificate()
    {
        var error = await Assert.ThrowsAsync<ArgumentException>(() => TestServer.StartAsync(output, o => o.NoPlaintext = true));

        Assert.Contains("--no-plaintext needs --tls-cert", error.Message, StringComparison.Ordinal);
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task ConnectAsync(int port)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
    }
}
