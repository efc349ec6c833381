using System.Globalization;

namespace Enroll.Cli.Infrastructure;

/// <summary>Parses durations written as <c>90s</c>, <c>15m</c>, <c>12h</c>, <c>30d</c>, <c>2w</c> (or <c>hh:mm:ss</c>).</summary>
internal static class Durations
{
    public static bool TryParse(string? text, out TimeSpan value) => TryParse(text, allowZero: false, out value);

    /// <summary>As <see cref="TryParse(string?, out TimeSpan)"/>; with <paramref name="allowZero"/>, <c>0</c> and <c>0s</c> are accepted too.</summary>
    public static bool TryParse(string? text, bool allowZero, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        var unit = text[^1];
        var number = text[..^1];
        if (char.IsDigit(unit))
        {
            return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value) && (value > TimeSpan.Zero || (allowZero && value == TimeSpan.Zero));
        }

        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var amount) || amount < 0 || (amount == 0 && !allowZero))
        {
            return false;
        }

        TimeSpan? parsed = char.ToLowerInvariant(unit) switch
        {
            's' => TimeSpan.FromSeconds(amount),
            'm' => TimeSpan.FromMinutes(amount),
            'h' => TimeSpan.FromHours(amount),
            'd' => TimeSpan.FromDays(amount),
            'w' => TimeSpan.FromDays(7 * amount),
            _ => null,
        };
        value = parsed ?? default;
        return parsed is not null;
    }

    public static TimeSpan Parse(string text, bool allowZero = false) =>
        TryParse(text, allowZero, out var value) ? value : throw new FormatException(
            $"'{text}' is not a duration; write it like 90s, 15m, 12h, 30d or 2w{(allowZero ? " (or 0 for none)" : string.Empty)}");

    public static string Format(TimeSpan value) =>
        value.TotalDays >= 1 && value.TotalDays == Math.Floor(value.TotalDays) ? $"{value.TotalDays:0}d"
        : value.TotalHours >= 1 && value.TotalHours == Math.Floor(value.TotalHours) ? $"{value.TotalHours:0}h"
        : value.TotalMinutes >= 1 && value.TotalMinutes == Math.Floor(value.TotalMinutes) ? $"{value.TotalMinutes:0}m"
        : $"{value.TotalSeconds:0.###}s";
}
