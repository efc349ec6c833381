using System.Globalization;
using System.Text.Json.Nodes;

namespace Enroll.Protocol.Commands;

/// <summary>
/// The limits of a command (SPEC §2.6), declared once: the server checks them before it stores a command or a result,
/// the CLI before it sends one. Every refusal names the limit it broke.
/// </summary>
public static class CommandLimits
{
    /// <summary>Largest command payload and largest result payload, as compact UTF-8 JSON.</summary>
    public const int MaxPayloadBytes = 64 * 1024;

    /// <summary>Most commands a device may have queued or sent and not finished; the next one is refused.</summary>
    public const int MaxOutstandingPerDevice = 100;

    /// <summary>Longest command name.</summary>
    public const int MaxNameLength = 128;

    /// <summary>Longest result message.</summary>
    public const int MaxMessageLength = 4096;

    /// <summary>Shortest time to live.</summary>
    public static readonly TimeSpan MinTtl = TimeSpan.FromSeconds(1);

    /// <summary>Longest time to live.</summary>
    public static readonly TimeSpan MaxTtl = TimeSpan.FromDays(7);

    /// <summary>The time to live of a command sent without one.</summary>
    public static readonly TimeSpan DefaultTtl = TimeSpan.FromHours(1);

    /// <summary>Longest an HTTP caller may wait for a command's result (<c>?wait=</c>).</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromMinutes(5);

    /// <summary>Why <paramref name="name"/> may not name a command (1 to <see cref="MaxNameLength"/> printable characters, no spaces), or null when it may.</summary>
    public static string? CheckName(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "name is required";
        }

        if (name.Length > MaxNameLength)
        {
            return string.Create(CultureInfo.InvariantCulture, $"name is {name.Length} characters, more than the limit of {MaxNameLength}");
        }

        return name.Any(c => char.IsControl(c) || char.IsWhiteSpace(c))
            ? "name must not contain spaces or control characters"
            : null;
    }

    /// <summary>Why <paramref name="payload"/> (a command's input or a result's output, named <paramref name="what"/>) is too large, or null when it is not.</summary>
    public static string? CheckPayload(JsonNode? payload, string what = "payload") =>
        payload is null ? null : CheckPayloadText(payload.ToJsonString(), what);

    /// <summary>As <see cref="CheckPayload"/>, for payload JSON text.</summary>
    public static string? CheckPayloadText(string? json, string what = "payload")
    {
        if (json is null)
        {
            return null;
        }

        var size = System.Text.Encoding.UTF8.GetByteCount(json);
        return size > MaxPayloadBytes
            ? string.Create(CultureInfo.InvariantCulture, $"{what} is {size:N0} bytes, more than the limit of {MaxPayloadBytes:N0} (64 KiB)")
            : null;
    }

    /// <summary>Why <paramref name="ttl"/> may not be a command's time to live (<see cref="MinTtl"/> to <see cref="MaxTtl"/>), or null when it may.</summary>
    public static string? CheckTtl(TimeSpan ttl) =>
        ttl < MinTtl || ttl > MaxTtl
            ? string.Create(CultureInfo.InvariantCulture, $"ttl must be 1s to 7d (the limits; {ttl.TotalSeconds:0.###}s given)")
            : null;

    /// <summary>Why <paramref name="message"/> is too long for a result, or null when it is not.</summary>
    public static string? CheckMessage(string? message) =>
        message is { Length: > MaxMessageLength }
            ? string.Create(CultureInfo.InvariantCulture, $"message is {message.Length} characters, more than the limit of {MaxMessageLength}")
            : null;

    /// <summary>The refusal of a command over <see cref="MaxOutstandingPerDevice"/>.</summary>
    public static string TooManyMessage(string deviceId) =>
        string.Create(CultureInfo.InvariantCulture, $"device '{deviceId}' already has {MaxOutstandingPerDevice} commands queued or sent and not finished (the limit); wait for them to finish, expire or be canceled");

    /// <summary>
    /// Parses a time to live written as seconds (<c>90</c>) or with a unit (<c>90s</c>, <c>15m</c>, <c>1h</c>, <c>7d</c>);
    /// false when it is neither. The range is checked by <see cref="CheckTtl"/>.
    /// </summary>
    public static bool TryParseDuration(string? text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        var unit = char.ToLowerInvariant(text[^1]);
        var digits = char.IsDigit(unit) ? text : text[..^1];
        if (!double.TryParse(digits, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var amount) || double.IsInfinity(amount) || amount > 1e9)
        {
            return false;
        }

        TimeSpan? parsed = unit switch
        {
            's' or (>= '0' and <= '9') => TimeSpan.FromSeconds(amount),
            'm' => TimeSpan.FromMinutes(amount),
            'h' => TimeSpan.FromHours(amount),
            'd' => TimeSpan.FromDays(amount),
            _ => null,
        };
        value = parsed ?? default;
        return parsed is not null;
    }
}
