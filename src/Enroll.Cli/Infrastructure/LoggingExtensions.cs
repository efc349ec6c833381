using Microsoft.Extensions.Logging;

namespace Enroll.Cli.Infrastructure;

internal static class LoggingExtensions
{
    /// <summary>Sends every console log line to standard error, keeping standard output for results (and --json).</summary>
    public static ILoggingBuilder AddConsoleStandardError(this ILoggingBuilder builder) =>
        builder.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
}
