using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Tests;

/// <summary>Keeps every log line a server writes (event ID, level, text, whether it carried an exception), to count them.</summary>
internal sealed class CountingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<(int EventId, LogLevel Level, string Text, bool HasException)> Lines { get; } = new();

    public int Count(int eventId) => Lines.Count(l => l.EventId == eventId);

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    private sealed class Logger(CountingLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Lines.Enqueue((eventId.Id, logLevel, formatter(state, exception), exception is not null));
    }
}
