using Enroll.Testing;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll server --database</c>: the PostgreSQL registry is chosen on the command line, never with its password there.</summary>
public sealed class ServerDatabaseOptionTests
{
    [Fact]
    public async Task Server_WithAPasswordInTheDatabaseString_RefusesToStart_AsAUsageError_WithoutEchoingThePassword()
    {
        using var folder = new TempDirectory("enroll-cli-database");

        var result = await CliRunner.RunAsync(
            "server", "--mqtt-port", "0", "--http-port", "0", "--data-dir", folder.Path,
            "--database", "Host=127.0.0.1;Database=enroll;Username=enroll;Password=hunter2");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("ENROLL_DATABASE_PASSWORD", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", result.Error + result.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerHelp_ListsTheDatabaseOption_AndWhereThePasswordComesFrom()
    {
        var result = await CliRunner.RunAsync("server", "--help");

        Assert.Contains("--database", result.Out, StringComparison.Ordinal);
        Assert.Contains("ENROLL_DATABASE_PASSWORD", result.Out, StringComparison.Ordinal);
    }
}
