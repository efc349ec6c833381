using System.Security.Cryptography;
using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Enroll.Testing;

namespace Enroll.Server.Tests.Tokens;

/// <summary>The key-encryption key: how it seals server keys, where it comes from, and what it refuses.</summary>
public sealed class KeyEncryptionKeyTests : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-kek");

    [Fact]
    public void Seal_ThenOpenForTheSameKeyIdAndUse_GivesThePrivateKeyBack_AndTheSealedBytesDoNotContainIt()
    {
        var kek = KeyEncryptionKey.Generate();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var privateKey = key.ExportPkcs8PrivateKey();

        var sealedKey = kek.Seal(privateKey, "kid-1", KeyUse.Signing);

        Assert.Equal(privateKey, kek.Open(sealedKey, "kid-1", KeyUse.Signing));
        Assert.Equal(-1, sealedKey.AsSpan().IndexOf(key.ExportParameters(true).D));
        Assert.NotEqual(sealedKey, kek.Seal(privateKey, "kid-1", KeyUse.Signing));
    }

    [Theory]
    [InlineData("kid-2", "signing")]
    [InlineData("kid-1", "encryption")]
    public void Open_ASealedKeyMovedToAnotherKeyIdOrUse_Fails(string keyId, string useName)
    {
        var use = useName == "signing" ? KeyUse.Signing : KeyUse.Encryption;
        var kek = KeyEncryptionKey.Generate();
        var sealedKey = kek.Seal([1, 2, 3, 4], "kid-1", KeyUse.Signing);

        Assert.ThrowsAny<CryptographicException>(() => kek.Open(sealedKey, keyId, use));
    }

    [Fact]
    public void Open_WithAnotherKek_Fails_AndTheTwoHaveDifferentIds()
    {
        var a = KeyEncryptionKey.Generate();
        var b = KeyEncryptionKey.Generate();

        Assert.NotEqual(a.Id, b.Id);
        Assert.ThrowsAny<CryptographicException>(() => b.Open(a.Seal([1, 2, 3], "kid", KeyUse.Signing), "kid", KeyUse.Signing));
    }

    [Fact]
    public void Parse_TheSameText_GivesTheSameId()
    {
        var text = KeyEncryptionKey.NewText();

        Assert.Equal(KeyEncryptionKey.Parse(text, "a").Id, KeyEncryptionKey.Parse(text, "b").Id);
        Assert.Matches("^[0-9a-f]{16}$", KeyEncryptionKey.Parse(text, "a").Id);
    }

    [Theory]
    [InlineData("not base64 !")]
    [InlineData("AAAA")]
    public void Parse_TextThatIsNot32BytesOfBase64_IsRefused_SayingHowToMakeOne(string text)
    {
        var refused = Assert.Throws<ServerStartException>(() => KeyEncryptionKey.Parse(text, KeyEncryptionKey.Variable));

        Assert.Equal(ServerStartProblem.KeyEncryptionKeyInvalid, refused.Problem);
        Assert.Contains(KeyEncryptionKey.Variable, refused.Message, StringComparison.Ordinal);
        Assert.Contains("head -c 32 /dev/urandom | base64", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_WithADatabaseAndNoKek_IsRefused_SayingHowToMakeOne()
    {
        var options = new EnrollServerOptions { Database = "Host=db;Database=enroll;Username=enroll" };

        var refused = Assert.Throws<ServerStartException>(() => KeyEncryptionKey.Load(options, _folder.Path, environmentValue: null));

        Assert.Equal(ServerStartProblem.KeyEncryptionKeyRequired, refused.Problem);
        Assert.Contains("--key-encryption-key-file", refused.Message, StringComparison.Ordinal);
        Assert.Contains(KeyEncryptionKey.Variable, refused.Message, StringComparison.Ordinal);
        Assert.Contains("head -c 32 /dev/urandom | base64 > kek; chmod 600 kek", refused.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_folder.Combine("keys")), "no KEK is made for a shared database");
    }

    [Fact]
    public void Load_WithADatabaseAndTheVariable_UsesTheVariable()
    {
        var text = KeyEncryptionKey.NewText();
        var options = new EnrollServerOptions { Database = "Host=db;Database=enroll;Username=enroll" };

        var kek = KeyEncryptionKey.Load(options, _folder.Path, text);

        Assert.Equal(KeyEncryptionKey.Parse(text, "x").Id, kek.Id);
        Assert.Equal(KeyEncryptionKey.Variable, kek.Source);
    }

    [Fact]
    public void Load_TheFileOption_WinsOverTheVariable()
    {
        var file = TestKeyEncryptionKeys.Write(_folder.Combine("kek"));
        var options = new EnrollServerOptions { KeyEncryptionKeyFile = file };

        var kek = KeyEncryptionKey.Load(options, _folder.Path, KeyEncryptionKey.NewText());

        Assert.Equal(KeyEncryptionKey.Parse(File.ReadAllText(file), "x").Id, kek.Id);
        Assert.False(kek.Created);
    }

    [Fact]
    public void Load_WithSqliteAndNoKek_CreatesAnOwnerOnlyFileOnce_ThenReadsIt()
    {
        var options = new EnrollServerOptions { DataDirectory = _folder.Path };

        var first = KeyEncryptionKey.Load(options, _folder.Path, environmentValue: null);
        var second = KeyEncryptionKey.Load(options, _folder.Path, environmentValue: null);

        var file = _folder.Combine("keys", KeyEncryptionKey.DefaultFileName);
        Assert.True(first.Created);
        Assert.False(second.Created);
        Assert.Equal(first.Id, second.Id);
        Assert.Equal(file, first.Source);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }
    }

    [Fact]
    public void Load_AKekFileOthersCanRead_IsRefused_LikeAKeyFile()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var file = TestKeyEncryptionKeys.Write(_folder.Combine("kek"));
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);

        var refused = Assert.Throws<InvalidOperationException>(() => KeyEncryptionKey.Load(new EnrollServerOptions { KeyEncryptionKeyFile = file }, _folder.Path, null));

        Assert.Contains("can be read by other users", refused.Message, StringComparison.Ordinal);
        Assert.Contains(file, refused.Message, StringComparison.Ordinal);
    }

    public void Dispose() => _folder.Dispose();
}
