using System.CommandLine;
using Enroll.Server;

namespace Enroll.Cli.Commands;

/// <summary>The observability flags of <c>enroll server</c>: <c>--no-metrics</c>, <c>--metrics-key</c>, <c>--otlp-endpoint</c>, <c>--log-format</c>.</summary>
internal static partial class ServerFlags
{
    private static readonly Option<bool> NoMetrics = new("--no-metrics") { Description = "Do not serve Prometheus metrics at /metrics" };

    private static readonly Option<string?> MetricsKey = new("--metrics-key") { Description = "Serve /metrics only to requests with 'Authorization: Bearer KEY'" };

    private static readonly Option<string?> OtlpEndpoint = DeviceFlags.OtlpEndpointOption();

    /// <summary>The <c>--log-format</c> flag of <c>enroll server</c>.</summary>
    public static Option<string> LogFormat { get; } = DeviceFlags.LogFormatOption();

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
        options.OtlpEndpoint = DeviceFlags.ParseOtlp(parse.GetValue(OtlpEndpoint));
    }
}
