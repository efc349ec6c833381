using System.Text.Json;
using System.Text.Json.Nodes;

namespace Enroll.Protocol.Twins;

/// <summary>
/// JSON Merge Patch (RFC 7396), the patch format of twins (SPEC §2.5): an object patch sets its members on the target,
/// recursively for objects; a member set to <c>null</c> is deleted; anything that is not an object replaces the target
/// whole. Nothing here mutates its arguments.
/// </summary>
public static class JsonMergePatch
{
    /// <summary>The result of applying <paramref name="patch"/> to <paramref name="target"/> (RFC 7396 §2, MergePatch).</summary>
    public static JsonNode? Apply(JsonNode? target, JsonNode? patch)
    {
        if (patch is not JsonObject patchObject)
        {
            return patch?.DeepClone();
        }

        var result = target is JsonObject targetObject ? (JsonObject)targetObject.DeepClone() : [];
        foreach (var (name, value) in patchObject)
        {
            if (value is null)
            {
                result.Remove(name);
            }
            else
            {
                var merged = Apply(result[name], value);
                result[name] = merged;
            }
        }

        return result;
    }

    /// <summary>
    /// The smallest merge patch that turns <paramref name="from"/> into <paramref name="to"/>: members that differ are
    /// set, members gone are set to <c>null</c>, objects on both sides are compared member by member. For documents
    /// without null values (a twin document has none: null means deleted), <c>Apply(from, Diff(from, to))</c> equals
    /// <paramref name="to"/>. Returns an empty object when they are equal.
    /// </summary>
    public static JsonObject Diff(JsonObject from, JsonObject to)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        var patch = new JsonObject();
        foreach (var (name, before) in from)
        {
            if (!to.ContainsKey(name))
            {
                patch[name] = null;
            }
            else if (to[name] is JsonObject afterObject && before is JsonObject beforeObject)
            {
                var inner = Diff(beforeObject, afterObject);
                if (inner.Count > 0)
                {
                    patch[name] = inner;
                }
            }
            else if (!JsonNode.DeepEquals(before, to[name]))
            {
                patch[name] = to[name]?.DeepClone();
            }
        }

        foreach (var (name, after) in to)
        {
            if (!from.ContainsKey(name))
            {
                patch[name] = after?.DeepClone();
            }
        }

        return patch;
    }

    /// <summary>Parses a patch or document, which must be a JSON object; null with <paramref name="error"/> otherwise.</summary>
    public static JsonObject? ParseObject(ReadOnlySpan<byte> utf8Json, out string? error)
    {
        try
        {
            if (JsonNode.Parse(utf8Json, documentOptions: new JsonDocumentOptions { MaxDepth = TwinLimits.MaxDepth + 2 }) is JsonObject parsed)
            {
                error = null;
                return parsed;
            }

            error = "a twin patch must be a JSON object";
            return null;
        }
        catch (JsonException ex)
        {
            error = $"not valid JSON: {ex.Message}";
            return null;
        }
    }
}
