using System.CommandLine;
using Enroll.Server;

namespace Enroll.Cli.Commands;

/// <summary>The observability flags of <c>enroll server</c>: <c>--no-metrics</c>, <c>--metrics-key</c>, <c>--otlp-endpoint</c>, <c>--log-format</c>.</summary>
internal static partial class ServerFlags
{
    private static readonly Option<bool> NoMetrics = new("--no-metrics") { Description = "Do not serve Prometheus metrics at /metrics" };

    private static readonly Option<string?> MetricsKey = new("--metrics-key") { Description = "Serve /metrics only to requests with 'Authorization: Bearer KEY'" };

    private static readonly Option<string?> OtlpEndpoint = OtlpEndpointOption();

    /// <summary>The <c>--log-format</c> flag of <c>enroll server</c>.</summary>
    public static Option<string> LogFormat { get; } = LogFormatOption();

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

    static partial void AddObservabilityFlags(Command command)
    {
        command.Options.Add(NoMetrics);
        command.Options.Add(MetricsKey);
        command.Options.Add(OtlpEndpoint);
        command.Options.Add(LogFormat);
    }

    static partial void ApplyObservabilityFlags(ParseResult parse, EnrollServerOptions options)
    {
        options.MetricsEndpoint = !parse.GetValue(NoMetrics);
        options.MetricsKey = parse.GetValue(MetricsKey);
        options.OtlpEndpoint = ParseOtlp(parse.GetValue(OtlpEndpoint));
    }
}
