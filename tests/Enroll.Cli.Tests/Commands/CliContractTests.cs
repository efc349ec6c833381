using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary>
/// The CLI contract of docs/cli.md, checked on the real executable: every failure exits with the code of the table and
/// prints exactly one line on standard error, prefixed <c>enroll:</c>, and never a stack trace (unless --verbose).
/// </summary>
public sealed class CliContractTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly TempDirectory _folder = new("enroll-contract");
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _folder.Dispose();
    }

    private async Task<(int ExitCode, string Out, string Error)> Enroll(params string[] args)
    {
        var result = await EnrollProcess.RunAsync(Timeout, args);
        output.WriteLine($"$ enroll {string.Join(' ', args)}\nexit {result.ExitCode}\nstdout: {result.Out}\nstderr: {result.Error}");
        return result;
    }

    /// <summary>Exit code <paramref name="expected"/>, one stderr line <c>enroll: ...</c>, no stack trace anywhere.</summary>
    private static string AssertFailure((int ExitCode, string Out, string Error) result, int expected)
    {
        Assert.True(result.ExitCode == expected, $"exit code {result.ExitCode}, expected {expected}; stderr: {result.Error}");
        var line = Assert.Single(Lines(result.Error));
        Assert.StartsWith("enroll: ", line, StringComparison.Ordinal);
        AssertNoStackTrace(result);
        return line;
    }

    private static void AssertNoStackTrace((int ExitCode, string Out, string Error) result)
    {
        Assert.DoesNotContain("   at ", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", result.Error, StringComparison.Ordinal);
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public async Task UnknownOption_IsAUsageError_OneLineNamingTheCommandsHelp_WithoutTheHelpText()
    {
        var result = await Enroll("device", "status", "--bogus");

        var line = AssertFailure(result, 2);
        Assert.Contains("'--bogus'", line, StringComparison.Ordinal);
        Assert.EndsWith("(see enroll device status --help)", line, StringComparison.Ordinal);
        Assert.DoesNotContain("Usage:", result.Out + result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissingRequiredOption_AndNoCommandAtAll_AreUsageErrors()
    {
        Assert.Contains("--org", AssertFailure(await Enroll("tokens", "create"), 2), StringComparison.Ordinal);
        Assert.EndsWith("(see enroll --help)", AssertFailure(await Enroll(), 2), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PortOutOfRange_IsAUsageErrorNamingTheOption()
    {
        var result = await Enroll("server", "--mqtt-port", "99999", "--data-dir", _folder.Combine("srv-port"));

        Assert.Contains("--mqtt-port: 99999 is not a port", AssertFailure(result, 2), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerOnABusyHttpPort_ExitsRefusedWithOneLineNamingThePort()
    {
        using var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var port = ((IPEndPoint)holder.LocalEndpoint).Port;

        var result = await Enroll("server", "--mqtt-port", "0", "--http-port", $"{port}", "--data-dir", _folder.Combine("srv-busy"));

        var line = AssertFailure(result, 3);
        Assert.Contains($"{port}", line, StringComparison.Ordinal);
        Assert.Contains("already in use", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnreachableServer_ExitsUnavailable_AndOnlyVerboseShowsTheException()
    {
        var quiet = await Enroll("tokens", "list", "--server", "http://127.0.0.1:1", "--admin-key", "x");
        Assert.Contains("cannot reach the server", AssertFailure(quiet, 4), StringComparison.Ordinal);

        var verbose = await Enroll("tokens", "list", "--server", "http://127.0.0.1:1", "--admin-key", "x", "--verbose");
        Assert.Equal(4, verbose.ExitCode);
        var lines = Lines(verbose.Error);
        Assert.StartsWith("enroll: cannot reach the server", lines[0], StringComparison.Ordinal);
        Assert.Contains("AdminApiException", verbose.Error, StringComparison.Ordinal);
        Assert.True(lines.Length > 1);
    }

    [Fact]
    public async Task RefusedProvisioningToken_ExitsRefusedWithOneLine()
    {
        var result = await Enroll("device", "register", "--broker", _server.MqttEndpoint.ToString(), "--client-id", "contract-1", "--token", "ept_bogus.token",
            "--state", _folder.Combine("refused"));

        Assert.Contains("unauthorized", AssertFailure(result, 3), StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnreachableBroker_ExitsUnavailableWithOneLine()
    {
        var result = await Enroll("device", "register", "--broker", "mqtt://127.0.0.1:1", "--client-id", "contract-2", "--token", "ept_x.y",
            "--state", _folder.Combine("nobroker"), "--max-attempts", "2", "--attempt-timeout", "1s", "--max-backoff", "1s");

        AssertFailure(result, 4);
    }

    [Fact]
    public async Task ServerCertificateFromAnotherCa_ExitsRefused_BecauseRetryingCannotHelp()
    {
        using var trusted = new TestCertificates(_folder.Combine("pki"), "Trusted CA");
        using var other = new TestCertificates(_folder.Combine("pki"), "Other CA");
        var certificate = other.IssueServer();
        await using var server = await TestServer.StartAsync(output, o =>
        {
            o.TlsCertificateFile = certificate.CertificatePath;
            o.TlsKeyFile = certificate.KeyPath;
            o.MqttTlsPort = 0;
            o.HttpsPort = 0;
        });

        var result = await Enroll("device", "register", "--broker", server.Host.MqttTlsEndpoint!.ToString(), "--ca", trusted.CaPath, "--client-id", "contract-tls",
            "--token", "ept_x.y", "--state", _folder.Combine("tls"), "--max-attempts", "3", "--attempt-timeout", "2s", "--max-backoff", "1s");

        Assert.Contains("CA", AssertFailure(result, 3), StringComparison.Ordinal);
    }

    [Fact]
    public async Task StatusOfAnEmptyFolder_ExitsNotRegisteredWithOneLineSayingHowToRegister()
    {
        var result = await Enroll("device", "status", "--state", _folder.Combine("empty"));

        Assert.Contains("enroll device register", AssertFailure(result, 5), StringComparison.Ordinal);
        Assert.Contains("unprovisioned", result.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("empty")]
    public async Task StatusWithADamagedOutbox_ExitsDamagedWithOneLine_AndReportsItInJson(string damage)
    {
        var state = _folder.Combine($"damaged-outbox-{damage}");
        Directory.CreateDirectory(state);
        await File.WriteAllBytesAsync(Path.Combine(state, "outbox.db"), damage == "garbage" ? Garbage(4096) : []);

        var text = await Enroll("device", "status", "--state", state);
        Assert.Contains("outbox.db", AssertFailure(text, 6), StringComparison.Ordinal);

        var json = await Enroll("device", "status", "--state", state, "--json");
        AssertFailure(json, 6);
        using var document = JsonDocument.Parse(json.Out);
        Assert.Equal("outbox.db", document.RootElement.GetProperty("damaged")[0].GetProperty("file").GetString());
    }

    [Fact]
    public async Task SendIntoAFullOutbox_ExitsUnavailableWithOneLine()
    {
        var result = await Enroll("device", "send", "--state", _folder.Combine("full"), "--client-id", "contract-full", "--stream", "t", "--data", "x",
            "--outbox-max-messages", "2", "--repeat", "3");

        Assert.Contains("the outbox is full", AssertFailure(result, 4), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendWithAnUnreadableDataFile_IsAUsageErrorNamingTheFile()
    {
        var result = await Enroll("device", "send", "--state", _folder.Combine("nofile"), "--client-id", "contract-nofile", "--stream", "t", "--data", "@/no/such/payload.json");

        Assert.Contains("/no/such/payload.json", AssertFailure(result, 2), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MessagesTail_WithALimitAboveTheServersMaximum_IsAUsageErrorNamingTheMaximum()
    {
        var result = await Enroll("messages", "tail", "--limit", "100000", "--server", _server.HttpEndpoint.ToString(), "--admin-key", _server.AdminKey);

        Assert.Contains("at most 1000", AssertFailure(result, 2), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeviceRun_RefusedForGood_EndsWithExitCode3AndOneLineSayingWhatToDo()
    {
        var result = await Enroll("device", "run", "--broker", _server.MqttEndpoint.ToString(), "--client-id", "contract-run", "--token", "ept_bogus.token",
            "--state", _folder.Combine("run-refused"));

        Assert.Equal(3, result.ExitCode);
        var line = Assert.Single(Lines(result.Error), l => l.StartsWith("enroll:", StringComparison.Ordinal));
        Assert.Contains("stopped for good", line, StringComparison.Ordinal);
        Assert.Contains("enroll device run --token", line, StringComparison.Ordinal);
        AssertNoStackTrace(result);
    }

    private static byte[] Garbage(int count) => [.. Enumerable.Range(0, count).Select(i => (byte)((i * 131) + 7))];
}
