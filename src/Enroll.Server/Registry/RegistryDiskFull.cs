using Enroll.Server.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Registry;

/// <summary>
/// What the server does while the registry's disk is full: every refused write is counted, the log says "registry disk
/// full" once per interval (with how many writes were refused, never a stack trace per attempt), devices are asked to
/// come back after <see cref="RetryAfterSeconds"/>, and the first write that succeeds again is logged as the recovery.
/// </summary>
internal sealed partial class RegistryDiskFull(TimeProvider timeProvider, IOptions<EnrollServerOptions> options, ServerMetrics metrics, ILogger<RegistryDiskFull> logger)
{
    private readonly RepeatedCondition _condition = new(timeProvider, RepeatedCondition.DefaultInterval);
    private int _full;

    /// <summary>Seconds a refused device or operator is asked to wait.</summary>
    public int RetryAfterSeconds { get; } = (int)Math.Ceiling(options.Value.DiskFullRetryAfter.TotalSeconds);

    /// <summary>True while the last registry write failed for a full disk.</summary>
    public bool IsFull => Volatile.Read(ref _full) != 0;

    /// <summary>A write of <paramref name="operation"/> failed for a full disk.</summary>
    public void Refused(string operation, Exception exception)
    {
        Volatile.Write(ref _full, 1);
        metrics.DiskFullRefusal(operation);
        if (_condition.Occurred(out var occurrences))
        {
            LogDiskFull(logger, occurrences, operation, exception.Message, RetryAfterSeconds);
        }
    }

    /// <summary>A write succeeded: if the disk was full, that is over.</summary>
    public void Succeeded()
    {
        if (Volatile.Read(ref _full) != 0 && Interlocked.Exchange(ref _full, 0) != 0)
        {
            LogRecovered(logger, _condition.Count);
            _condition.Ended();
        }
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Error, Message = "Registry disk full: {Count} write(s) refused since the last report (latest: {Operation}: {Reason}); devices are asked to retry after {RetryAfterSeconds} s. Free space in the data folder.")]
    private static partial void LogDiskFull(ILogger logger, long count, string operation, string reason, int retryAfterSeconds);

    [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "Registry writes succeed again after a full disk ({Total} write(s) refused in all)")]
    private static partial void LogRecovered(ILogger logger, long total);
}
