using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.Unicode;

namespace Enroll.Protocol.Json;

/// <summary>Reads and writes wire messages through <see cref="EnrollJsonContext"/>, with clear errors for bad input.</summary>
public static class EnrollJson
{
    /// <summary>The deepest nesting accepted in a message, metadata included.</summary>
    public const int MaxDepth = 16;

    /// <summary>Serialises <paramref name="value"/> to UTF-8 JSON.</summary>
    public static byte[] Serialize<T>(T value, JsonTypeInfo<T> typeInfo) => JsonSerializer.SerializeToUtf8Bytes(value, typeInfo);

    /// <summary>
    /// Parses <paramref name="payload"/> as <typeparamref name="T"/>. On failure returns false and a one-line reason
    /// that names the offending field or position, never the .NET type.
    /// </summary>
    public static bool TryDeserialize<T>(
        ReadOnlySequence<byte> payload,
        JsonTypeInfo<T> typeInfo,
        [NotNullWhen(true)] out T? value,
        [NotNullWhen(false)] out string? error)
        where T : class
    {
        value = null;
        if (payload.IsEmpty)
        {
            error = "the payload is empty; expected a JSON object";
            return false;
        }

        if (!IsValidUtf8(payload))
        {
            error = "the payload is not valid UTF-8";
            return false;
        }

        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = MaxDepth });
            value = JsonSerializer.Deserialize(ref reader, typeInfo);
            if (value is null)
            {
                error = "expected a JSON object, found null";
                return false;
            }

            error = null;
            return true;
        }
        catch (JsonException ex)
        {
            error = Describe(ex);
            return false;
        }
    }

    /// <summary>Parses a byte array; see <see cref="TryDeserialize{T}(ReadOnlySequence{byte}, JsonTypeInfo{T}, out T, out string)"/>.</summary>
    public static bool TryDeserialize<T>(
        ReadOnlyMemory<byte> payload,
        JsonTypeInfo<T> typeInfo,
        [NotNullWhen(true)] out T? value,
        [NotNullWhen(false)] out string? error)
        where T : class =>
        TryDeserialize(new ReadOnlySequence<byte>(payload), typeInfo, out value, out error);

    private static bool IsValidUtf8(ReadOnlySequence<byte> payload)
    {
        if (payload.IsSingleSegment)
        {
            return Utf8.IsValid(payload.FirstSpan);
        }

        return Utf8.IsValid(payload.ToArray());
    }

    private static string Describe(JsonException ex)
    {
        var path = string.IsNullOrEmpty(ex.Path) ? "$" : ex.Path;
        var message = ex.Message;
        if (message.Contains("could not be mapped", StringComparison.Ordinal))
        {
            return $"unknown field at {path}";
        }

        if (message.Contains("could not be converted", StringComparison.Ordinal))
        {
            return $"wrong type at {path}";
        }

        if (message.Contains("maximum configured depth", StringComparison.Ordinal) || message.Contains("MaxDepth", StringComparison.Ordinal))
        {
            return $"JSON nested deeper than {MaxDepth} levels";
        }

        var line = ex.LineNumber is { } l ? l + 1 : 1;
        var position = ex.BytePositionInLine is { } p ? p + 1 : 1;
        return $"malformed JSON at line {line}, byte {position}";
    }
}
