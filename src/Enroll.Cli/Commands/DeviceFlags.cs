using System.CommandLine;

namespace Enroll.Cli.Commands;

/// <summary>
/// Flags the device commands share with <c>enroll server</c>; here, with the device commands, so that the device agent
/// (<c>enroll-agent</c>, which compiles these files without the server) has them too.
/// </summary>
internal static class DeviceFlags
{
    /// <summary><c>--log-format text|json</c>, for <c>enroll server</c> and <c>enroll device run</c>.</summary>
    internal static Option<string> LogFormatOption()
    {
        var option = new Option<string>("--log-format") { Description = "Log format: text (one line per entry) or json (one JSON object per line, for log shippers)", DefaultValueFactory = _ => "text" };
        option.AcceptOnlyFromAmong("text", "json");
        return option;
    }

    /// <summary><c>--otlp-endpoint URL</c>, for <c>enroll server</c> and <c>enroll device run</c>.</summary>
    internal static Option<string?> OtlpEndpointOption()
    {
        var option = new Option<string?>("--otlp-endpoint")
        {
            Description = "Export metrics over OTLP to this collector (http://collector:4317); OTEL_EXPORTER_OTLP_* variables are respected",
        };
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && ParseOtlp(result.Tokens[0].Value) is null)
            {
                result.AddError($"--otlp-endpoint must be an http:// or https:// URL, not '{result.Tokens[0].Value}'");
            }
        });
        return option;
    }

    /// <summary>An OTLP collector address, or null when <paramref name="text"/> is no http(s) URL.</summary>
    internal static Uri? ParseOtlp(string? text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" ? uri : null;
}
