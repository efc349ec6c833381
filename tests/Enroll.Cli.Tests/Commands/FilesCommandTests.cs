using System.Security.Cryptography;
using System.Text.Json;
using Enroll.Cli.Infrastructure;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll files ...</c> against a real server whose files are stored through its own registry and blob store.</summary>
public sealed class FilesCommandTests : IAsyncLifetime
{
    private readonly ITestOutputHelper _output;
    private readonly TempDirectory _downloads = new("enroll-files-cli");
    private TestServer _server = null!;

    public FilesCommandTests(ITestOutputHelper output)
    {
        _output = output;

        // Every progress line, not one per 5 s: the test sees them without waiting (only this class downloads large files).
        ByteProgress.LineInterval = TimeSpan.Zero;
    }

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(_output);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _downloads.Dispose();
    }

    private string[] Admin(params string[] args) => [.. args, "--server", _server.HttpEndpoint.ToString(), "--admin-key", _server.AdminKey];

    [Fact]
    public async Task List_ShowsEveryFileInATable_OrAsJson_AndByDevice()
    {
        var a = await _server.StoreFileInStoreAsync("dev-a", "boot.log", new byte[2048], "text/plain");
        var b = await _server.StoreFileInStoreAsync("dev-b", "still.jpg", new byte[10]);

        var (exit, stdout, stderr) = await CliRunner.RunAsync(Admin("files", "list"));
        var (jsonExit, json, _) = await CliRunner.RunAsync(Admin("files", "list", "--device", "dev-b", "--json"));

        Assert.Equal(0, exit);
        Assert.Equal(string.Empty, stderr);
        Assert.Contains(a, stdout, StringComparison.Ordinal);
        Assert.Contains("boot.log", stdout, StringComparison.Ordinal);
        Assert.Contains("2.0 KiB", stdout, StringComparison.Ordinal);
        Assert.Contains(b, stdout, StringComparison.Ordinal);
        Assert.Equal(0, jsonExit);
        var item = Assert.Single(JsonDocument.Parse(json).RootElement.GetProperty("items").EnumerateArray());
        Assert.Equal(b, item.GetProperty("file_id").GetString());
        Assert.Equal("still.jpg", item.GetProperty("name").GetString());
        Assert.Equal(10, item.GetProperty("size").GetInt64());
        Assert.Equal(64, item.GetProperty("sha256").GetString()!.Length);
    }

    [Fact]
    public async Task List_WithNoFiles_SaysHowDevicesUploadThem()
    {
        var (exit, stdout, _) = await CliRunner.RunAsync(Admin("files", "list"));

        Assert.Equal(0, exit);
        Assert.Contains("enroll device upload", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Get_SavesTheVerifiedBytes_WithProgressLinesOnStderr_ForALargeFile()
    {
        var content = RandomNumberGenerator.GetBytes(3 * 1024 * 1024);
        var id = await _server.StoreFileInStoreAsync("dev-a", "trace.pcap", content, chunkSize: 256 * 1024);
        var target = _downloads.Combine("trace-copy.pcap");

        var (exit, stdout, stderr) = await CliRunner.RunAsync(Admin("files", "get", id, "-o", target));

        Assert.Equal(0, exit);
        Assert.Equal(content, await File.ReadAllBytesAsync(target));
        Assert.Contains($"Saved {id} (3.0 MiB, SHA-256 verified) to {target}", stdout, StringComparison.Ordinal);
        var progress = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(progress.Length > 2, stderr);
        Assert.All(progress, line => Assert.StartsWith($"enroll: trace.pcap ({id}): ", line, StringComparison.Ordinal));
        Assert.Contains("of 3.0 MiB", progress[^1], StringComparison.Ordinal);
        Assert.False(File.Exists(target + ".partial"));
    }

    [Fact]
    public async Task Get_OfASmallFileIntoAFolder_SavesItUnderItsName_WithoutProgress_AndJsonShowsIt()
    {
        var id = await _server.StoreFileInStoreAsync("dev-a", "config.json", "{\"a\":1}"u8.ToArray(), "application/json");

        var (exit, stdout, stderr) = await CliRunner.RunAsync(Admin("files", "get", id, "-o", _downloads.Path, "--json"));

        Assert.Equal(0, exit);
        Assert.Equal(string.Empty, stderr);
        Assert.Equal("{\"a\":1}", await File.ReadAllTextAsync(_downloads.Combine("config.json")));
        Assert.Equal("config.json", JsonDocument.Parse(stdout).RootElement.GetProperty("name").GetString());
    }

    [Fact]
    public async Task Get_ToAnExistingFile_IsRefused_UnlessForced()
    {
        var id = await _server.StoreFileInStoreAsync("dev-a", "new.txt", "new"u8.ToArray());
        var target = _downloads.Combine("existing.txt");
        await File.WriteAllTextAsync(target, "old");

        var (refusedExit, _, refused) = await CliRunner.RunAsync(Admin("files", "get", id, "-o", target));
        var kept = await File.ReadAllTextAsync(target);
        var (forcedExit, _, _) = await CliRunner.RunAsync(Admin("files", "get", id, "-o", target, "--force"));

        Assert.Equal(2, refusedExit);
        Assert.Contains("exists; pass --force", refused, StringComparison.Ordinal);
        Assert.Equal("old", kept);
        Assert.Equal(0, forcedExit);
        Assert.Equal("new", await File.ReadAllTextAsync(target));
    }

    [Fact]
    public async Task Get_WhenTheServedBytesDoNotMatchTheirHash_SavesNothing_AndExitsOne()
    {
        var content = RandomNumberGenerator.GetBytes(4096);
        var id = await _server.StoreFileInStoreAsync("dev-a", "dump.bin", content);
        var (_, shown, _) = await CliRunner.RunAsync(Admin("files", "list", "--json"));
        var transferId = JsonDocument.Parse(shown).RootElement.GetProperty("items")[0].GetProperty("transfer_id").GetString()!;

        // The stored blob damaged on the server's disk after it was verified: same length, other bytes.
        var blob = Path.Combine(_server.DataDirectory, "files", "stored", "dev-a", transferId);
        var damaged = (byte[])content.Clone();
        damaged[100] ^= 0xff;
        await File.WriteAllBytesAsync(blob, damaged);
        var target = _downloads.Combine("dump.bin");

        var (exit, _, stderr) = await CliRunner.RunAsync(Admin("files", "get", id, "-o", target));

        Assert.Equal(1, exit);
        Assert.Contains("not " + Convert.ToHexStringLower(SHA256.HashData(content)) + " as the server says", stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(target));
        Assert.False(File.Exists(target + ".partial"));
    }

    [Fact]
    public async Task GetAndDelete_OfAnUnknownFile_ExitThree_WithOneLine()
    {
        var (getExit, _, get) = await CliRunner.RunAsync(Admin("files", "get", "file_none", "-o", _downloads.Combine("x")));
        var (deleteExit, _, delete) = await CliRunner.RunAsync(Admin("files", "delete", "file_none"));

        Assert.Equal(3, getExit);
        Assert.Equal("enroll: 404 Not Found: no file 'file_none'", get.TrimEnd());
        Assert.Equal(3, deleteExit);
        Assert.Equal("enroll: 404 Not Found: no file 'file_none'", delete.TrimEnd());
    }

    [Fact]
    public async Task Delete_RemovesTheFile_SoTheListNoLongerShowsIt()
    {
        var id = await _server.StoreFileInStoreAsync("dev-a", "old.log", new byte[3000]);

        var (exit, stdout, _) = await CliRunner.RunAsync(Admin("files", "delete", id));
        var (_, list, _) = await CliRunner.RunAsync(Admin("files", "list", "--json"));

        Assert.Equal(0, exit);
        Assert.Contains($"Deleted {id} (old.log, 2.9 KiB) of device dev-a.", stdout, StringComparison.Ordinal);
        Assert.Empty(JsonDocument.Parse(list).RootElement.GetProperty("items").EnumerateArray());
    }

    [Fact]
    public async Task Transfers_ShowTheUploadsUnderWay_WithChunksReceived()
    {
        var transferId = await _server.StartTransferInStoreAsync("dev-a", "firmware.log", new byte[5 * 1024], chunks: 2);

        var (exit, stdout, _) = await CliRunner.RunAsync(Admin("files", "transfers"));
        var (_, json, _) = await CliRunner.RunAsync(Admin("files", "transfers", "--device", "dev-a", "--json"));
        var (_, none, _) = await CliRunner.RunAsync(Admin("files", "transfers", "--device", "dev-b"));

        Assert.Equal(0, exit);
        Assert.Contains(transferId, stdout, StringComparison.Ordinal);
        Assert.Contains("2/5 chunks (40%)", stdout, StringComparison.Ordinal);
        var item = Assert.Single(JsonDocument.Parse(json).RootElement.GetProperty("items").EnumerateArray());
        Assert.Equal(2, item.GetProperty("received").GetInt32());
        Assert.Equal(5, item.GetProperty("chunk_count").GetInt32());
        Assert.Contains("No transfers under way.", none, StringComparison.Ordinal);
    }
}
