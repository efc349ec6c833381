using Xunit.Abstractions;

namespace Enroll.Server.Tests.Architecture;

/// <summary>
/// The server's namespaces form layers: the domain (tokens, provisioning, registry) knows nothing of the transport
/// (request handlers, broker, HTTP), and no two namespaces use each other, directly or round a loop.
/// </summary>
public sealed class NamespaceCycleTests(ITestOutputHelper output)
{
    private const string Root = "Enroll.Server";

    /// <summary>
    /// The package's own namespace holds its public face: contracts every part may use (the options, the message sink,
    /// the answer port) and the composition root that wires the parts (the host), which is a node of its own.
    /// </summary>
    private static Dictionary<string, HashSet<string>> Graph() => Computed.Value;

    /// <summary>Read once for all these tests (about 6.6 MB of allocation per read).</summary>
    private static readonly Lazy<Dictionary<string, HashSet<string>>> Computed = new(() => NamespaceDependencies.Of(typeof(EnrollServerHost).Assembly, Root));

    [Fact]
    public void ServerNamespaces_DependOnEachOtherWithoutACycle()
    {
        var graph = Graph();
        foreach (var (from, uses) in graph.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{from} -> {string.Join(", ", uses.Order(StringComparer.Ordinal))}");
        }

        var cycle = NamespaceDependencies.FindCycle(graph);
        Assert.True(cycle is null, $"namespace cycle: {string.Join(" -> ", cycle ?? [])}");
    }

    [Fact]
    public void RootNamespaceContracts_UseNoPartOfTheServer()
    {
        Assert.Empty(Graph().GetValueOrDefault(Root) ?? []);
    }

    [Fact]
    public void NoPart_DependsOnTheCompositionRoot()
    {
        var composition = NamespaceDependencies.CompositionRoot(Root);
        Assert.Empty(Graph().Where(e => e.Value.Contains(composition)).Select(e => e.Key));
    }

    [Theory]
    [InlineData("Enroll.Server.Tokens")]
    [InlineData("Enroll.Server.ProvisioningTokens")]
    [InlineData("Enroll.Server.Provisioning")]
    [InlineData("Enroll.Server.Registry")]
    [InlineData("Enroll.Server.Domain")]
    public void DomainNamespace_DoesNotDependOnTheTransport(string domain)
    {
        string[] transport = ["Enroll.Server.Handlers", "Enroll.Server.Requests", "Enroll.Server.Broker", "Enroll.Server.Broker.Transport", "Enroll.Server.Http"];
        var uses = Graph()[domain];
        Assert.Empty(uses.Intersect(transport));
    }

    [Fact]
    public void FindCycle_ReportsTheLoop_WhenThereIsOne()
    {
        var graph = new Dictionary<string, HashSet<string>>
        {
            ["A"] = ["B"],
            ["B"] = ["C"],
            ["C"] = ["A"],
            ["D"] = ["A"],
        };

        Assert.Equal(["A", "B", "C", "A"], NamespaceDependencies.FindCycle(graph));
        graph["C"] = [];
        Assert.Null(NamespaceDependencies.FindCycle(graph));
    }
}
