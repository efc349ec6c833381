using System.Globalization;
using System.Text.Json.Nodes;

namespace Enroll.Protocol.Twins;

/// <summary>
/// The limits of a twin document and of a patch to it (SPEC §2.5), checked by the server before it stores a patch and by
/// the device library before it queues a report: a patch over a limit is refused with the reason, never truncated.
/// </summary>
public static class TwinLimits
{
    /// <summary>Largest document, desired or reported, as compact UTF-8 JSON.</summary>
    public const int MaxDocumentBytes = 32 * 1024;

    /// <summary>Deepest nesting of objects and arrays; the document object itself is depth 1.</summary>
    public const int MaxDepth = 10;

    /// <summary>Longest member name.</summary>
    public const int MaxKeyLength = 128;

    /// <summary>Why <paramref name="patch"/> may not be applied (its member names or depth), or null when it may.</summary>
    public static string? CheckPatch(JsonObject patch)
    {
        ArgumentNullException.ThrowIfNull(patch);
        return Check(patch, "", 1);
    }

    /// <summary>Why <paramref name="document"/> may not be stored (its size, names or depth), or null when it may.</summary>
    public static string? CheckDocument(JsonObject document)
    {
        ArgumentNullException.ThrowIfNull(document);
        var size = System.Text.Encoding.UTF8.GetByteCount(document.ToJsonString());
        if (size > MaxDocumentBytes)
        {
            return string.Create(CultureInfo.InvariantCulture, $"the document would be {size:N0} bytes, more than the limit of {MaxDocumentBytes:N0}");
        }

        return Check(document, "", 1);
    }

    private static string? Check(JsonNode? node, string path, int depth)
    {
        if (node is not (JsonObject or JsonArray))
        {
            return null;
        }

        if (depth > MaxDepth)
        {
            return $"'{(path.Length == 0 ? "/" : path)}' is nested deeper than {MaxDepth} levels";
        }

        if (node is JsonArray array)
        {
            for (var i = 0; i < array.Count; i++)
            {
                if (Check(array[i], $"{path}/{i}", depth + 1) is { } problem)
                {
                    return problem;
                }
            }

            return null;
        }

        foreach (var (name, value) in (JsonObject)node)
        {
            if (KeyProblem(name) is { } keyProblem)
            {
                return $"'{path}/{name}': {keyProblem}";
            }

            if (Check(value, $"{path}/{name}", depth + 1) is { } problem)
            {
                return problem;
            }
        }

        return null;
    }

    private static string? KeyProblem(string name) => name switch
    {
        { Length: 0 } => "a member name must not be empty",
        { Length: > MaxKeyLength } => $"a member name must be at most {MaxKeyLength} characters",
        _ when name.Contains('$', StringComparison.Ordinal) || name.Contains('.', StringComparison.Ordinal) => "a member name must not contain '$' or '.'",
        _ => null,
    };
}
