using System.Security.Cryptography;
using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Tokens;

/// <summary>A single (SQLite) server keeps its keys in the registry, sealed under its KEK, and imports an older server's key files once.</summary>
public sealed class ServerKeyStoreTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-server-keys");

    private string Data => _folder.Combine("data");

    private string Keys => _folder.Combine("data", "keys");

    [Fact]
    public async Task AFirstStart_StoresOneSigningAndOneEncryptionKey_SealedSoNeitherRowNorFileHoldsThePrivateKey()
    {
        byte[] signingD, encryptionD;
        await using (var server = await TestServer.StartAsync(output, dataDirectory: Data))
        {
            Assert.True(server.Host.FirstStart);
            signingD = server.Host.Services.GetRequiredService<SigningKeyRing>().Current.Key.ExportParameters(true).D!;
            encryptionD = server.Host.Services.GetRequiredService<EncryptionKeyRing>().Current.Key.ExportParameters(true).D!;
            var store = server.Host.Services.GetRequiredService<IKeyStore>();
            var kek = server.Host.Services.GetRequiredService<KeyEncryptionKey>();
            var rows = (await store.ListKeysAsync(KeyUse.Signing)).Concat(await store.ListKeysAsync(KeyUse.Encryption)).ToList();

            Assert.Equal(2, rows.Count);
            Assert.All(rows, row => Assert.Equal(kek.Id, row.KekId));
            Assert.All(rows, row => Assert.Equal(-1, row.SealedPrivateKey.AsSpan().IndexOf(signingD)));
            Assert.All(rows, row => Assert.Equal(-1, row.SealedPrivateKey.AsSpan().IndexOf(encryptionD)));
        }

        foreach (var file in Directory.EnumerateFiles(Data, "*", SearchOption.AllDirectories))
        {
            var bytes = await File.ReadAllBytesAsync(file);
            Assert.True(bytes.AsSpan().IndexOf(signingD) < 0, $"{file} holds the signing private key");
            Assert.True(bytes.AsSpan().IndexOf(encryptionD) < 0, $"{file} holds the encryption private key");
        }

        Assert.Empty(Directory.EnumerateFiles(Keys, "*.pem", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task ARestart_LoadsTheSameKeysFromTheRegistry_IncludingRotatedOnes()
    {
        IReadOnlyList<string> before;
        await using (var server = await TestServer.StartAsync(output, dataDirectory: Data))
        {
            using var rotated = await server.Http.PostAsync("/api/keys/rotate", null);
            rotated.EnsureSuccessStatusCode();
            before = KeyIds(server);
        }

        await using (var again = await TestServer.StartAsync(output, dataDirectory: Data))
        {
            Assert.False(again.Host.FirstStart);
            Assert.Equal(before, KeyIds(again));
            Assert.Equal(4, before.Count);
        }
    }

    [Fact]
    public async Task AStartWithAnotherKek_IsRefused_NamingBothKekIds()
    {
        string stored;
        await using (var server = await TestServer.StartAsync(output, dataDirectory: Data))
        {
            stored = server.Host.Services.GetRequiredService<KeyEncryptionKey>().Id;
        }

        var other = TestKeyEncryptionKeys.Write(_folder.Combine("other-kek"));
        var given = KeyEncryptionKey.Parse(await File.ReadAllTextAsync(other), other).Id;

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, o => o.KeyEncryptionKeyFile = other, dataDirectory: Data));

        Assert.Equal(ServerStartProblem.WrongKeyEncryptionKey, refused.Problem);
        Assert.Contains(stored, refused.Message, StringComparison.Ordinal);
        Assert.Contains(given, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AKekFileThatDoesNotExist_IsRefusedBeforeAnythingStarts()
    {
        var missing = _folder.Combine("no-such-kek");

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => TestServer.StartAsync(output, o => o.KeyEncryptionKeyFile = missing, dataDirectory: Data));

        Assert.Equal(ServerStartProblem.InvalidOptions, refused.Problem);
        Assert.Contains(missing, refused.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Data), "nothing was created");
    }

    [Fact]
    public async Task KeyFilesOfAnOlderServer_AreImportedOnce_KeepTheirOrder_AndMoveToImported()
    {
        var start = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var (oldSigning, oldSigningPublic) = WriteOldKey("signing-", start, ECDsa.Create(ECCurve.NamedCurves.nistP256));
        var (newSigning, _) = WriteOldKey("signing-", start.AddDays(1), ECDsa.Create(ECCurve.NamedCurves.nistP256));
        var (encryption, _) = WriteOldKey("encryption-", start, ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256));

        await using (var server = await TestServer.StartAsync(output, dataDirectory: Data))
        {
            var signing = server.Host.Services.GetRequiredService<SigningKeyRing>();
            Assert.Equal([oldSigning, newSigning], signing.All.Select(k => k.KeyId));
            Assert.Equal(start, signing.All[0].CreatedAt);
            Assert.Equal(oldSigningPublic.Q.X, signing.All[0].Key.ExportParameters(false).Q.X);
            Assert.Equal([encryption], server.Host.Services.GetRequiredService<EncryptionKeyRing>().All.Select(k => k.KeyId));
            Assert.False(server.Host.Services.GetRequiredService<PublishedKeys>().Created, "the imported keys are the first keys");
        }

        Assert.Empty(Directory.EnumerateFiles(Keys, "*.pem"));
        Assert.Equal(3, Directory.EnumerateFiles(Path.Combine(Keys, KeyFileImport.ImportedFolder), "*.pem").Count());

        // A copy put back (a restored backup of the folder) is skipped: the key IDs are stored already.
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Keys, KeyFileImport.ImportedFolder)))
        {
            File.Copy(file, Path.Combine(Keys, Path.GetFileName(file)));
        }

        await using (var again = await TestServer.StartAsync(output, dataDirectory: Data))
        {
            Assert.Equal([oldSigning, newSigning], again.Host.Services.GetRequiredService<SigningKeyRing>().All.Select(k => k.KeyId));
            Assert.Single(again.Host.Services.GetRequiredService<EncryptionKeyRing>().All);
        }

        Assert.Empty(Directory.EnumerateFiles(Keys, "*.pem"));
    }

    [Fact]
    public async Task AnImportedSigningKey_StillValidatesTokensItSignedBeforeTheUpgrade()
    {
        var (keyId, _) = WriteOldKey("signing-", new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero), ECDsa.Create(ECCurve.NamedCurves.nistP256));

        await using var server = await TestServer.StartAsync(output, dataDirectory: Data);
        var token = await server.CreateTokenAsync(autoApprove: true);
        await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "upgraded-1");
        await client.SubscribeAsync(Enroll.Protocol.Topics.EnrollTopics.ClientResponses("upgraded-1"));
        await client.PublishAsync(Enroll.Protocol.Topics.EnrollTopics.Register, $$"""{"client_id":"upgraded-1","provisioning_token":"{{token.Token}}"}""", Enroll.Protocol.Topics.EnrollTopics.ClientResponses("upgraded-1"), [1]);
        using var answer = System.Text.Json.JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(TimeSpan.FromSeconds(30))));
        var access = answer.RootElement.GetProperty("jwt_token").GetString()!;

        Assert.Equal(keyId, new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(access).Kid);
        Assert.True((await server.Host.Services.GetRequiredService<DeviceTokenValidator>().ValidateAccessTokenAsync(access, null)).IsValid);
    }

    [Fact]
    public async Task AnOlderServersKeyFileOthersCanRead_IsRefused()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        WriteOldKey("signing-", DateTimeOffset.UnixEpoch, ECDsa.Create(ECCurve.NamedCurves.nistP256));
        var file = Directory.GetFiles(Keys, "signing-*.pem").Single();
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => TestServer.StartAsync(output, dataDirectory: Data));

        Assert.Contains("can be read by other users", error.Message, StringComparison.Ordinal);
        Assert.Contains(file, error.Message, StringComparison.Ordinal);
    }

    public void Dispose() => _folder.Dispose();

    private static List<string> KeyIds(TestServer server) =>
    [
        .. server.Host.Services.GetRequiredService<SigningKeyRing>().All.Select(k => k.KeyId),
        .. server.Host.Services.GetRequiredService<EncryptionKeyRing>().All.Select(k => k.KeyId),
    ];

    /// <summary>A key file as the server before issue 12 wrote it (<see cref="KeyFiles.Write"/>).</summary>
    private (string KeyId, ECParameters Public) WriteOldKey(string prefix, DateTimeOffset created, ECAlgorithm key)
    {
        using (key)
        {
            Enroll.Shared.Files.OwnerOnlyFiles.EnsureDirectory(Data);
            Enroll.Shared.Files.OwnerOnlyFiles.EnsureDirectory(Keys);
            var publicKey = key.ExportParameters(false);
            var keyId = KeyFiles.Thumbprint(publicKey);
            KeyFiles.Write(Keys, prefix, created, keyId, key.ExportPkcs8PrivateKeyPem());
            return (keyId, publicKey);
        }
    }
}
