using System.Text.Json.Nodes;
using Enroll.Protocol.Twins;

namespace Enroll.Protocol.Tests.Twins;

public sealed class TwinLimitsTests
{
    [Fact]
    public void ADocumentWithinEveryLimit_IsAccepted()
    {
        var document = JsonNode.Parse("""{"network":{"wifi":{"ssid":"plant-4","channels":[1,6,11]}},"interval_s":30}""")!.AsObject();

        Assert.Null(TwinLimits.CheckDocument(document));
        Assert.Null(TwinLimits.CheckPatch(document));
    }

    [Fact]
    public void ADocumentOverTheSizeLimit_IsRefusedWithItsSize()
    {
        var document = new JsonObject { ["blob"] = new string('x', TwinLimits.MaxDocumentBytes) };

        Assert.Contains("more than the limit of 32,768", TwinLimits.CheckDocument(document), StringComparison.Ordinal);
    }

    [Fact]
    public void NestingOneLevelPastTheLimit_IsRefusedNamingWhere()
    {
        var atLimit = Nested(TwinLimits.MaxDepth);
        var overLimit = Nested(TwinLimits.MaxDepth + 1);

        Assert.Null(TwinLimits.CheckPatch(atLimit));
        Assert.Equal("'/k/k/k/k/k/k/k/k/k/k' is nested deeper than 10 levels", TwinLimits.CheckPatch(overLimit));
    }

    [Theory]
    [InlineData("", "a member name must not be empty")]
    [InlineData("$version", "a member name must not contain '$' or '.'")]
    [InlineData("a.b", "a member name must not contain '$' or '.'")]
    public void AMemberNameAgainstTheRules_IsRefused(string name, string reason)
    {
        var patch = new JsonObject { ["ok"] = new JsonObject { [name] = 1 } };

        Assert.Equal($"'/ok/{name}': {reason}", TwinLimits.CheckPatch(patch));
    }

    [Fact]
    public void AMemberNameOfMoreThan128Characters_IsRefused()
    {
        Assert.Null(TwinLimits.CheckPatch(new JsonObject { [new string('k', 128)] = 1 }));
        Assert.EndsWith("a member name must be at most 128 characters", TwinLimits.CheckPatch(new JsonObject { [new string('k', 129)] = 1 }), StringComparison.Ordinal);
    }

    /// <summary>An object nested <paramref name="depth"/> levels deep, the outermost counting as 1.</summary>
    private static JsonObject Nested(int depth)
    {
        var node = new JsonObject();
        for (var i = 1; i < depth; i++)
        {
            node = new JsonObject { ["k"] = node };
        }

        return node;
    }
}
