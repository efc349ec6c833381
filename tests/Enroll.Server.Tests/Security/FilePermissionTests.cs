using System.Runtime.Versioning;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Security;

/// <summary>The server's secrets stay owner-only: it creates them so, and refuses to start with ones others can read.</summary>
[UnsupportedOSPlatform("windows")]
public sealed class FilePermissionTests(ITestOutputHelper output)
{
    private const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    [Fact]
    public async Task Server_CreatesItsDataFolderKeyEncryptionKeyAdminKeyAndRegistry_OwnerOnly()
    {
        using var parent = new TempDirectory("enroll-server");
        var data = parent.Combine("data");
        await using (var server = await TestServer.StartAsync(output, dataDirectory: data))
        {
            await server.CreateTokenAsync(autoApprove: true);
        }

        var entries = Directory.EnumerateFileSystemEntries(data, "*", SearchOption.AllDirectories).Prepend(data).ToList();
        Assert.Contains(entries, e => Path.GetFileName(e) == "admin.key");
        Assert.Contains(entries, e => Path.GetFileName(e) == "registry.db");
        Assert.Contains(entries, e => Path.GetFileName(e) == "key-encryption.key");
        Assert.All(entries, entry => Assert.True(
            (File.GetUnixFileMode(entry) & GroupOrOther) == 0,
            $"{entry} is {File.GetUnixFileMode(entry)}"));
    }

    [Fact]
    public async Task Device_CreatesItsStateFolderCredentialsAndOutbox_OwnerOnly()
    {
        await using var server = await TestServer.StartAsync(output);
        var token = await server.CreateTokenAsync(autoApprove: true);
        using var parent = new TempDirectory();
        var state = parent.Combine("device");
        await using (var device = DeviceHarness.Create(server.MqttEndpoint, "owner-only-1", state, token.Token, output))
        {
            await device.Registration.StartAsync();
            await device.Outbox.SendAsync("s", "{}"u8.ToArray());
        }

        var entries = Directory.EnumerateFileSystemEntries(state, "*", SearchOption.AllDirectories).Prepend(state).ToList();
        Assert.Contains(entries, e => Path.GetFileName(e) == "device.db");
        Assert.Contains(entries, e => Path.GetFileName(e) == "outbox.db");
        Assert.All(entries, entry => Assert.True(
            (File.GetUnixFileMode(entry) & GroupOrOther) == 0,
            $"{entry} is {File.GetUnixFileMode(entry)}"));
    }

    [Theory]
    [InlineData("keys/key-encryption.key")]
    [InlineData("admin.key")]
    public async Task Server_RefusesToStart_WhenOthersCanReadASecret(string secret)
    {
        using var data = new TempDirectory("enroll-server");
        await using (await TestServer.StartAsync(output, dataDirectory: data.Path))
        {
        }

        var file = Directory.GetFiles(data.Combine(Path.GetDirectoryName(secret)!), Path.GetFileName(secret)).Single();
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => TestServer.StartAsync(output, dataDirectory: data.Path));

        Assert.Contains("can be read by other users", error.Message, StringComparison.Ordinal);
        Assert.Contains(file, error.Message, StringComparison.Ordinal);
    }
}
