using Enroll.Cli.Commands;
using Enroll.Testing;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll server</c>'s transfer limits: sizes as people write them, refused with one line when they make no sense.</summary>
public sealed class ServerTransferOptionTests
{
    [Theory]
    [InlineData("1024", 1024L)]
    [InlineData("16MiB", 16L * 1024 * 1024)]
    [InlineData("1.5 GiB", 3L * 512 * 1024 * 1024)]
    [InlineData("5gib", 5L * 1024 * 1024 * 1024)]
    [InlineData("2KiB", 2048L)]
    [InlineData("1TiB", 1L << 40)]
    [InlineData("100B", 100L)]
    public void TryParseSize_ReadsBytesAndBinaryUnits(string text, long expected)
    {
        Assert.True(ServerCommand.TryParseSize(text, out var bytes));
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-5MiB")]
    [InlineData("16MB")]
    [InlineData("lots")]
    [InlineData("99999999999TiB")]
    public void TryParseSize_RefusesWhatIsNoSize(string text) => Assert.False(ServerCommand.TryParseSize(text, out _));

    [Fact]
    public async Task Server_WithAMalformedSize_IsAUsageErrorNamingTheOption()
    {
        var result = await CliRunner.RunAsync("server", "--mqtt-port", "0", "--http-port", "0", "--max-file-size", "lots");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--max-file-size: 'lots' is not a size", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Server_WithASizeOutOfRange_RefusesToStart_SayingTheRange()
    {
        using var folder = new TempDirectory("enroll-cli-transfer");

        var result = await CliRunner.RunAsync("server", "--mqtt-port", "0", "--http-port", "0", "--data-dir", folder.Path, "--max-message-size", "512");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("the maximum message size (--max-message-size) 512 bytes is out of range: use 1,024 to 268,435,456 bytes", result.Error, StringComparison.Ordinal);
    }
}
