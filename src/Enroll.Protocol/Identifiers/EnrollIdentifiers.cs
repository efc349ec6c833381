namespace Enroll.Protocol;

/// <summary>
/// Rules for Client IDs, Device IDs, organisation IDs and stream names. They appear inside MQTT topics, so they may
/// not contain topic separators or wildcards.
/// </summary>
public static class EnrollIdentifiers
{
    /// <summary>The longest identifier accepted, in characters. The default value is 128.</summary>
    public const int MaxLength = 128;

    /// <summary>
    /// True when <paramref name="value"/> is 1-128 characters of ASCII letters, digits and <c>- _ . : @</c>.
    /// </summary>
    public static bool IsValid(ReadOnlySpan<char> value)
    {
        if (value.IsEmpty || value.Length > MaxLength)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!IsAllowed(c))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>True when <paramref name="value"/> is a valid identifier (see <see cref="IsValid(ReadOnlySpan{char})"/>).</summary>
    public static bool IsValid(string? value) => value is not null && IsValid(value.AsSpan());

    /// <summary>
    /// True when <paramref name="value"/> is a valid stream name: one or more identifier segments separated by <c>/</c>
    /// (for example <c>telemetry</c> or <c>logs/kernel</c>), at most 128 characters.
    /// </summary>
    public static bool IsValidStream(ReadOnlySpan<char> value)
    {
        if (value.IsEmpty || value.Length > MaxLength)
        {
            return false;
        }

        foreach (var range in value.Split('/'))
        {
            if (!IsValid(value[range]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>True when <paramref name="value"/> is a valid stream name.</summary>
    public static bool IsValidStream(string? value) => value is not null && IsValidStream(value.AsSpan());

    /// <summary>Describes the identifier rule for error messages.</summary>
    public const string Rule = "1-128 characters of ASCII letters, digits and - _ . : @";

    private static bool IsAllowed(char c) =>
        c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '-' or '_' or '.' or ':' or '@';
}
