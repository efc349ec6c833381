using System.CommandLine;

namespace Enroll.Cli.Infrastructure;

/// <summary>Options shared by several commands, with their parsing and validation.</summary>
internal static class CliOptions
{
    private const string VerboseName = "--verbose";

    public static Option<bool> Json() => new("--json") { Description = "Print machine-readable JSON instead of text" };

    /// <summary>The global <c>--verbose</c>: log every step, and show the full exception of a failure.</summary>
    public static Option<bool> Verbose() => new(VerboseName, "-v")
    {
        Description = "Log every step to standard error, and show a failure's full exception",
        Recursive = true,
    };

    /// <summary>True when <c>--verbose</c> was given anywhere on the command line.</summary>
    public static bool IsVerbose(ParseResult parse)
    {
        try
        {
            return parse.GetValue<bool>(VerboseName);
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// A duration written like <c>10s</c>; read it with <see cref="GetDuration"/>, or with <see cref="GetDurationOrZero"/>
    /// when <paramref name="allowZero"/> lets <c>0</c> mean none.
    /// </summary>
    public static Option<string> Duration(string name, string description, string defaultValue, bool allowZero = false)
    {
        var option = new Option<string>(name) { Description = $"{description} ({(allowZero ? "0, " : string.Empty)}90s, 15m, 12h, 30d, ...)", DefaultValueFactory = _ => defaultValue };
        AddDurationValidator(option, allowZero);
        return option;
    }

    /// <summary>An optional duration; read it with <see cref="GetOptionalDuration"/>.</summary>
    public static Option<string?> OptionalDuration(string name, string description)
    {
        var option = new Option<string?>(name) { Description = $"{description} (90s, 15m, 12h, 30d, ...)" };
        AddDurationValidator(option);
        return option;
    }

    public static TimeSpan GetDuration(this ParseResult parse, Option<string> option) => Durations.Parse(parse.GetValue(option)!);

    /// <summary>As <see cref="GetDuration"/>, where <c>0</c> (none) is a meaningful value.</summary>
    public static TimeSpan GetDurationOrZero(this ParseResult parse, Option<string> option) => Durations.Parse(parse.GetValue(option)!, allowZero: true);

    public static TimeSpan? GetOptionalDuration(this ParseResult parse, Option<string?> option) =>
        parse.GetValue(option) is { } text ? Durations.Parse(text) : null;

    /// <summary>A URI option (System.CommandLine has no URI parser); read it with <see cref="GetUri"/>.</summary>
    public static Option<string> Uri(string name, string description, string defaultValue)
    {
        var option = new Option<string>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : null;
            if (text is not null && !System.Uri.TryCreate(text, UriKind.Absolute, out _))
            {
                result.AddError($"{name}: '{text}' is not an absolute URI such as mqtt://127.0.0.1:1883 or http://127.0.0.1:8080");
            }
        });
        return option;
    }

    /// <summary>A TCP port, 0 to 65535 (0 picks a free one); anything else is a usage error naming the option.</summary>
    public static Option<int> Port(string name, string description, int defaultValue)
    {
        var option = new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(result =>
        {
            // A token that is not a number at all is already a parse error of its own.
            if (result.Tokens.Count > 0 && int.TryParse(result.Tokens[0].Value, System.Globalization.CultureInfo.InvariantCulture, out var port) && port is < 0 or > 65535)
            {
                result.AddError($"{name}: {result.Tokens[0].Value} is not a port; give 1 to 65535, or 0 for a free one");
            }
        });
        return option;
    }

    public static Uri GetUri(this ParseResult parse, Option<string> option) => new(parse.GetValue(option)!, UriKind.Absolute);

    private static void AddDurationValidator(Option option, bool allowZero = false) =>
        option.Validators.Add(result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : null;
            if (text is not null && !Durations.TryParse(text, allowZero, out _))
            {
                result.AddError($"{option.Name}: '{text}' is not a duration; write it like 90s, 15m, 12h, 30d or 2w{(allowZero ? " (or 0 for none)" : string.Empty)}");
            }
        });
}
