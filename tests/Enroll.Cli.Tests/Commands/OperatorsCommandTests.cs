using System.Text.Json;
using Enroll.Testing;
using Xunit.Abstractions;

namespace Enroll.Cli.Tests.Commands;

/// <summary><c>enroll operators add|list|remove</c> and <c>enroll audit</c> against a real server.</summary>
public sealed class OperatorsCommandTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private string[] With(string key, params string[] args) => [.. args, "--server", _server.HttpEndpoint.ToString(), "--admin-key", key];

    [Fact]
    public async Task Add_PrintsTheKeyOnce_TheKeyWorksForTheCli_ButNotForOperators_AndRemoveStopsIt()
    {
        var (exit, stdout, stderr) = await CliRunner.RunAsync(With(_server.AdminKey, "operators", "add", "alice"));
        Assert.Equal(0, exit);
        Assert.Equal(string.Empty, stderr);
        Assert.Contains("cannot be shown again", stdout, StringComparison.Ordinal);
        var key = stdout.Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith("eop_", StringComparison.Ordinal));

        var (listExit, list, _) = await CliRunner.RunAsync(With(key, "operators", "list", "--json"));
        Assert.Equal(0, listExit);
        var item = Assert.Single(JsonDocument.Parse(list).RootElement.GetProperty("items").EnumerateArray());
        Assert.Equal("alice", item.GetProperty("name").GetString());
        Assert.Equal("admin", item.GetProperty("created_by").GetString());

        var (tokenExit, _, _) = await CliRunner.RunAsync(With(key, "tokens", "create", "--org", "acme"));
        Assert.Equal(0, tokenExit);

        var (refusedExit, _, refused) = await CliRunner.RunAsync(With(key, "operators", "add", "mallory"));
        Assert.Equal(ExitCodesRefused, refusedExit);
        Assert.Contains("403", refused, StringComparison.Ordinal);

        var (removeExit, removed, _) = await CliRunner.RunAsync(With(_server.AdminKey, "operators", "remove", "alice"));
        Assert.Equal(0, removeExit);
        Assert.Contains("Removed operator alice", removed, StringComparison.Ordinal);
        var (afterExit, _, after) = await CliRunner.RunAsync(With(key, "tokens", "list"));
        Assert.Equal(ExitCodesRefused, afterExit);
        Assert.Contains("401", after, StringComparison.Ordinal);

        var (auditExit, audit, _) = await CliRunner.RunAsync(With(_server.AdminKey, "audit", "--json", "--operator", "alice"));
        Assert.Equal(0, auditExit);
        var actions = JsonDocument.Parse(audit).RootElement.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("action").GetString()).ToList();
        Assert.Equal(["operator.add", "token.create"], actions);

        var (tableExit, table, _) = await CliRunner.RunAsync(With(_server.AdminKey, "audit", "--limit", "2", "--action", "operator.remove"));
        Assert.Equal(0, tableExit);
        Assert.Contains("operator.remove", table, StringComparison.Ordinal);
        Assert.Contains("alice", table, StringComparison.Ordinal);
    }

    private const int ExitCodesRefused = Enroll.Cli.Infrastructure.ExitCodes.Refused;
}
