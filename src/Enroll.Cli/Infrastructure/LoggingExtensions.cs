using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Enroll.Cli.Infrastructure;

internal static class LoggingExtensions
{
    /// <summary>
    /// Console logging as the CLI shows it: one line per entry (<c>HH:mm:ss warn: Category: message</c>), on standard
    /// error when <paramref name="standardError"/>. An exception appears as its type and message; only with
    /// <paramref name="verbose"/> as the full exception with its stack trace.
    /// </summary>
    /// <summary>
    /// <see cref="AddCliConsole"/> for <paramref name="format"/> <c>text</c>; for <c>json</c>, one JSON object per line
    /// (timestamp in UTC, event ID, category, level, message, state and scopes).
    /// </summary>
    public static ILoggingBuilder AddCliLogging(this ILoggingBuilder builder, string? format, bool verbose, bool standardError = true) =>
        format == "json"
            ? builder.AddJsonConsole(o =>
            {
                o.IncludeScopes = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.JsonWriterOptions = new System.Text.Json.JsonWriterOptions { Indented = false };
            }).AddConsole(o => o.LogToStandardErrorThreshold = standardError ? LogLevel.Trace : LogLevel.None)
            : builder.AddCliConsole(verbose, standardError);

    public static ILoggingBuilder AddCliConsole(this ILoggingBuilder builder, bool verbose, bool standardError = true) =>
        builder
            .AddConsole(o =>
            {
                o.FormatterName = CliConsoleFormatter.FormatterName;
                o.LogToStandardErrorThreshold = standardError ? LogLevel.Trace : LogLevel.None;
            })
            .AddCliFormatter(verbose);

    /// <summary>
    /// Registers <see cref="CliConsoleFormatter"/> without <c>AddConsoleFormatter</c>, which binds its options to
    /// configuration by reflection (a trim and AOT warning in the device agent); the CLI configures it in code only.
    /// </summary>
    private static ILoggingBuilder AddCliFormatter(this ILoggingBuilder builder, bool verbose)
    {
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<ConsoleFormatter, CliConsoleFormatter>());
        builder.Services.Configure<CliConsoleFormatterOptions>(o => o.Verbose = verbose);
        return builder;
    }
}

/// <summary>Options of <see cref="CliConsoleFormatter"/>.</summary>
internal sealed class CliConsoleFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>Show exceptions in full (with <c>--verbose</c>).</summary>
    public bool Verbose { get; set; }
}

/// <summary>Writes a log entry as one line; see <see cref="LoggingExtensions.AddCliConsole"/>.</summary>
internal sealed class CliConsoleFormatter : ConsoleFormatter
{
    public const string FormatterName = "enroll";

    // "Hosting failed to start": the CLI reports a failed start itself, in one line.
    private const int HostStartFailedEvent = 11;
    private const string HostCategory = "Microsoft.Extensions.Hosting.Internal.Host";

    private readonly IOptionsMonitor<CliConsoleFormatterOptions> _options;

    public CliConsoleFormatter(IOptionsMonitor<CliConsoleFormatterOptions> options)
        : base(FormatterName) => _options = options;

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var verbose = _options.CurrentValue.Verbose;
        if (!verbose && logEntry.EventId.Id == HostStartFailedEvent && logEntry.Category == HostCategory)
        {
            return;
        }

        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        var exception = logEntry.Exception;
        var level = logEntry.LogLevel switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            _ => "crit",
        };
        // --verbose names the event ID (docs/log-events.md), as the JSON format always does.
        var category = verbose ? $"{logEntry.Category}[{logEntry.EventId.Id}]" : logEntry.Category;
        var line = $"{TimeProvider.System.GetLocalNow():HH:mm:ss} {level}: {category}: {message.ReplaceLineEndings(" ")}";
        if (exception is not null)
        {
            line += verbose ? Environment.NewLine + exception : $" ({exception.GetType().Name}: {exception.Message.ReplaceLineEndings(" ")})";
        }

        textWriter.WriteLine(line);
    }
}
