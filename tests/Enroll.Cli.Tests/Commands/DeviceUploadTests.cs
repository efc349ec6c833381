using System.Security.Cryptography;
using System.Text.Json;
using Enroll.Device;
using Enroll.Testing;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll device upload</c>: stores a file in the outbox and prints its transfer ID; refuses clearly.</summary>
public sealed class DeviceUploadTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private async Task<string> RandomFileAsync(string name, int length)
    {
        var path = _folder.Combine(name);
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        await File.WriteAllBytesAsync(path, bytes);
        return path;
    }

    [Fact]
    public async Task Upload_StoresTheFileInTheOutbox_AndPrintsItsTransferId()
    {
        var state = _folder.Combine("store");
        var file = await RandomFileAsync("camera.jpg", 300 * 1024);

        var result = await CliRunner.RunAsync("device", "upload", file, "--state", state, "--client-id", "upload-1", "--content-type", "image/jpeg");

        Assert.True(result.ExitCode == 0, result.Error);
        var transferId = result.Out.Trim();
        Assert.Equal(26, transferId.Length);
        var statistics = DeviceOutbox.ReadStatistics(state)!;
        Assert.Equal(3, statistics.Depth);
        Assert.Equal(300 * 1024, statistics.Bytes);
        Assert.Equal(1, statistics.Transfers);
        Assert.Equal(string.Empty, result.Error);
    }

    [Fact]
    public async Task Upload_WithJsonAndAName_PrintsTheTransfer()
    {
        var state = _folder.Combine("json");
        var file = await RandomFileAsync("trace.bin", 1000);

        var result = await CliRunner.RunAsync("device", "upload", file, "--name", "boot-trace.bin", "--state", state, "--client-id", "upload-2", "--json");

        Assert.True(result.ExitCode == 0, result.Error);
        using var document = JsonDocument.Parse(result.Out);
        var root = document.RootElement;
        Assert.Equal(26, root.GetProperty("transfer_id").GetString()!.Length);
        Assert.Equal("boot-trace.bin", root.GetProperty("name").GetString());
        Assert.Equal(1000, root.GetProperty("size").GetInt64());
        Assert.Equal(1, root.GetProperty("chunks").GetInt32());
        Assert.Equal("stored", root.GetProperty("state").GetString());
    }

    [Fact]
    public async Task Upload_OfALargeFile_ReportsTheCopysProgressOnStandardError()
    {
        var state = _folder.Combine("progress");
        var file = await RandomFileAsync("big.bin", 20 * 1024 * 1024);

        var result = await CliRunner.RunAsync("device", "upload", file, "--state", state, "--client-id", "upload-3");

        Assert.True(result.ExitCode == 0, result.Error);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.InRange(lines.Length, 2, 10);
        Assert.Contains("copying big.bin into the outbox: 20.0 of 20.0 MiB (100 %)", lines[^1], StringComparison.Ordinal);
        Assert.Equal(26, result.Out.Trim().Length);
    }

    [Fact]
    public async Task Upload_OfAMissingFile_IsAUsageErrorNamingIt()
    {
        var result = await CliRunner.RunAsync("device", "upload", "/no/such/file.bin", "--state", _folder.Combine("missing"), "--client-id", "upload-4");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("/no/such/file.bin", result.Error, StringComparison.Ordinal);
        Assert.StartsWith("enroll: ", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upload_WithAnInvalidName_IsAUsageError_AndStoresNothing()
    {
        var state = _folder.Combine("bad-name");
        var file = await RandomFileAsync("ok.bin", 10);

        var result = await CliRunner.RunAsync("device", "upload", file, "--name", "../escape", "--state", state, "--client-id", "upload-5");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--name", result.Error, StringComparison.Ordinal);
        Assert.True(DeviceOutbox.ReadStatistics(state) is null or { Depth: 0 });
    }

    [Fact]
    public async Task Upload_TheSameFileTwice_StoresTwoTransfers()
    {
        var state = _folder.Combine("twice");
        var file = await RandomFileAsync("twice.bin", 5000);
        var first = await CliRunner.RunAsync("device", "upload", file, "--state", state, "--client-id", "upload-6");
        var second = await CliRunner.RunAsync("device", "upload", file, "--state", state, "--client-id", "upload-6");

        Assert.NotEqual(first.Out.Trim(), second.Out.Trim());
        Assert.Equal(2, DeviceOutbox.ReadStatistics(state)!.Transfers);
    }

    [Fact]
    public async Task Upload_OfAFileLargerThanTheOutbox_ExitsUnavailableNamingTheOption_AndFitsWithAHigherLimit()
    {
        var state = _folder.Combine("outbox-limit");
        var file = await RandomFileAsync("large.bin", 2 * 1024 * 1024);

        var refused = await CliRunner.RunAsync("device", "upload", file, "--state", state, "--client-id", "upload-7", "--outbox-max-bytes", "1048576");
        var stored = await CliRunner.RunAsync("device", "upload", file, "--state", state, "--client-id", "upload-7", "--outbox-max-bytes", "4194304");

        Assert.Equal(4, refused.ExitCode);
        Assert.Contains("OutboxMaxBytes", refused.Error, StringComparison.Ordinal);
        Assert.True(stored.ExitCode == 0, stored.Error);
        Assert.Equal(1, DeviceOutbox.ReadStatistics(state)!.Transfers);
    }

    private static async Task<string> RegisterAsync(TestServer server, string state, string clientId)
    {
        var token = await server.CreateTokenAsync();
        var registered = await CliRunner.RunAsync("device", "register", "--broker", server.MqttEndpoint.ToString(), "--client-id", clientId, "--token", token.Token!, "--state", state, "--json");
        Assert.True(registered.ExitCode == 0, registered.Error);
        using var identity = JsonDocument.Parse(registered.Out);
        return identity.RootElement.GetProperty("device_id").GetString()!;
    }

    [Fact]
    public async Task Upload_WithDeliver_ReturnsOnceTheServerStoredTheFile_WithTheSameHash()
    {
        await using var server = await TestServer.StartAsync();
        var state = _folder.Combine("deliver");
        await RegisterAsync(server, state, "upload-8");
        var file = await RandomFileAsync("deliver.bin", (1024 * 1024) + 3);

        var result = await CliRunner.RunAsync("device", "upload", file, "--broker", server.MqttEndpoint.ToString(), "--state", state, "--deliver", "--json");

        Assert.True(result.ExitCode == 0, result.Error);
        using var document = JsonDocument.Parse(result.Out);
        Assert.Equal("delivered", document.RootElement.GetProperty("state").GetString());
        var transferId = document.RootElement.GetProperty("transfer_id").GetString()!;
        var stored = Directory.GetFiles(Path.Combine(server.DataDirectory, "files", "stored"), transferId + "*", SearchOption.AllDirectories).Single();
        Assert.Equal(SHA256.HashData(await File.ReadAllBytesAsync(file)), SHA256.HashData(await File.ReadAllBytesAsync(stored)));
        Assert.Equal(0, DeviceOutbox.ReadStatistics(state)!.Depth);
    }

    [Fact]
    public async Task Upload_WithDeliver_OverTheDevicesQuota_ExitsRefusedWithTheServersReason_AndIsNotResent()
    {
        await using var server = await TestServer.StartAsync(configure: o => o.DeviceFileQuotaBytes = 512 * 1024);
        var state = _folder.Combine("quota");
        await RegisterAsync(server, state, "upload-9");
        var file = await RandomFileAsync("quota.bin", 1024 * 1024);

        var result = await CliRunner.RunAsync("device", "upload", file, "--broker", server.MqttEndpoint.ToString(), "--state", state, "--deliver");

        Assert.Equal(3, result.ExitCode);
        Assert.Contains("0x97", result.Error, StringComparison.Ordinal);
        Assert.Contains("quota.bin", result.Error, StringComparison.Ordinal);
        var statistics = DeviceOutbox.ReadStatistics(state)!;
        Assert.Equal(0, statistics.Depth);
        Assert.Equal(1, statistics.Quarantined);
    }
}
