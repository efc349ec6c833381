using System.Text.Json.Nodes;
using Enroll.Protocol.Twins;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Enroll.Protocol.Tests.Twins;

public sealed class JsonMergePatchTests
{
    /// <summary>The examples of RFC 7396 Appendix A: target, patch, result.</summary>
    public static TheoryData<string, string, string> Rfc7396Examples => new()
    {
        { """{"a":"b"}""", """{"a":"c"}""", """{"a":"c"}""" },
        { """{"a":"b"}""", """{"b":"c"}""", """{"a":"b","b":"c"}""" },
        { """{"a":"b"}""", """{"a":null}""", """{}""" },
        { """{"a":"b","b":"c"}""", """{"a":null}""", """{"b":"c"}""" },
        { """{"a":["b"]}""", """{"a":"c"}""", """{"a":"c"}""" },
        { """{"a":"c"}""", """{"a":["b"]}""", """{"a":["b"]}""" },
        { """{"a":{"b":"c"}}""", """{"a":{"b":"d","c":null}}""", """{"a":{"b":"d"}}""" },
        { """{"a":[{"b":"c"}]}""", """{"a":[1]}""", """{"a":[1]}""" },
        { """["a","b"]""", """["c","d"]""", """["c","d"]""" },
        { """{"a":"b"}""", """["c"]""", """["c"]""" },
        { """{"a":"foo"}""", "null", "null" },
        { """{"a":"foo"}""", "\"bar\"", "\"bar\"" },
        { """{"e":null}""", """{"a":1}""", """{"e":null,"a":1}""" },
        { """[1,2]""", """{"a":"b","c":null}""", """{"a":"b"}""" },
        { """{}""", """{"a":{"bb":{"ccc":null}}}""", """{"a":{"bb":{}}}""" },
    };

    [Theory]
    [MemberData(nameof(Rfc7396Examples))]
    public void ApplyingAPatch_GivesTheResultOfRfc7396AppendixA(string target, string patch, string expected)
    {
        var result = JsonMergePatch.Apply(JsonNode.Parse(target), JsonNode.Parse(patch));

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), result), $"got {result?.ToJsonString() ?? "null"}");
    }

    [Fact]
    public void ApplyingAPatch_LeavesTargetAndPatchAsTheyWere()
    {
        var target = JsonNode.Parse("""{"a":{"b":1},"c":2}""")!;
        var patch = JsonNode.Parse("""{"a":{"b":null,"d":3},"c":null}""")!;

        _ = JsonMergePatch.Apply(target, patch);

        Assert.Equal("""{"a":{"b":1},"c":2}""", target.ToJsonString());
        Assert.Equal("""{"a":{"b":null,"d":3},"c":null}""", patch.ToJsonString());
    }

    [Property(MaxTest = 300)]
    public Property TheDiffOfTwoDocuments_TurnsTheFirstIntoTheSecond() =>
        Prop.ForAll(Documents().ToArbitrary(), Documents().ToArbitrary(), (from, to) =>
        {
            var patch = JsonMergePatch.Diff(from, to);
            var result = JsonMergePatch.Apply(from, patch);
            return JsonNode.DeepEquals(to, result).Label($"from {from.ToJsonString()} to {to.ToJsonString()} by {patch.ToJsonString()} gave {result?.ToJsonString()}");
        });

    [Property(MaxTest = 300)]
    public Property AnObjectPatchAppliedTwice_ChangesNothingMore() =>
        Prop.ForAll(Documents().ToArbitrary(), Patches().ToArbitrary(), (document, patch) =>
        {
            var once = JsonMergePatch.Apply(document, patch);
            return JsonNode.DeepEquals(once, JsonMergePatch.Apply(once, patch));
        });

    [Fact]
    public void TheDiffOfEqualDocuments_IsEmpty() =>
        Assert.Empty(JsonMergePatch.Diff(JsonNode.Parse("""{"a":{"b":[1,2]},"c":"x"}""")!.AsObject(), JsonNode.Parse("""{"c":"x","a":{"b":[1,2]}}""")!.AsObject()));

    [Theory]
    [InlineData("[1]", "a twin patch must be a JSON object")]
    [InlineData("\"text\"", "a twin patch must be a JSON object")]
    [InlineData("{\"a\":", "not valid JSON")]
    public void SomethingThatIsNotAnObject_IsNotAPatch(string json, string reason)
    {
        Assert.Null(JsonMergePatch.ParseObject(System.Text.Encoding.UTF8.GetBytes(json), out var error));
        Assert.StartsWith(reason, error, StringComparison.Ordinal);
    }

    /// <summary>Null-free documents (a twin document has no nulls) over a few names, nested up to three levels.</summary>
    private static Gen<JsonObject> Documents() => ObjectOf(Values(3, allowNull: false));

    /// <summary>Object patches: like documents, with nulls (deletions).</summary>
    private static Gen<JsonObject> Patches() => ObjectOf(Values(3, allowNull: true));

    private static Gen<JsonObject> ObjectOf(Gen<JsonNode?> values) =>
        Gen.ListOf(Gen.Zip(Gen.Elements("a", "b", "c", "d"), values)).Select(members =>
        {
            var result = new JsonObject();
            foreach (var (name, value) in members)
            {
                result[name] = value?.DeepClone();
            }

            return result;
        });

    private static Gen<JsonNode?> Values(int depth, bool allowNull)
    {
        var scalars = Gen.OneOf(
            Gen.Choose(-3, 3).Select(n => (JsonNode?)JsonValue.Create(n)),
            Gen.Elements("x", "y").Select(s => (JsonNode?)JsonValue.Create(s)),
            Gen.Elements(true, false).Select(b => (JsonNode?)JsonValue.Create(b)),
            Gen.Choose(0, 2).Select(n => (JsonNode?)new JsonArray([.. Enumerable.Range(0, n).Select(i => (JsonNode?)JsonValue.Create(i))])));
        var withNull = allowNull ? Gen.OneOf(scalars, Gen.Constant<JsonNode?>(null)) : scalars;
        return depth == 0 ? withNull : Gen.OneOf(withNull, ObjectOf(Values(depth - 1, allowNull)).Select(o => (JsonNode?)o));
    }
}
