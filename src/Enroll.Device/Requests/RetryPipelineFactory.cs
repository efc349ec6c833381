using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Enroll.Device.Requests;

/// <summary>What a retry looks like, for state changes and logs.</summary>
internal readonly record struct RetryNotice(int FailedAttempt, TimeSpan Delay, Exception? Cause);

/// <summary>
/// Builds the Polly pipeline every request runs through: a per-attempt timeout inside an exponential retry (from
/// <see cref="EnrollDeviceOptions.InitialBackoff"/>, doubling, jittered, capped at <see cref="EnrollDeviceOptions.MaxBackoff"/>,
/// at most <see cref="EnrollDeviceOptions.MaxAttempts"/> attempts). A server's <c>retry_after_seconds</c> replaces the
/// computed delay. Permanent errors, refused credentials and protocol errors are not retried.
/// </summary>
internal static class RetryPipelineFactory
{
    /// <summary>Extra random wait on top of a server's <c>retry_after_seconds</c>, so a fleet told to wait does not return at once.</summary>
    public const double RetryAfterJitter = 0.2;

    /// <param name="options">The attempts, delays and timeout.</param>
    /// <param name="timeProvider">The clock the delays and timeouts run on.</param>
    /// <param name="onRetry">Told about every retry before its delay.</param>
    /// <param name="jitter">The random source for the jittered delays (Polly's randomizer and the server delay); null means <see cref="Jitter.None"/>.</param>
    public static ResiliencePipeline Create(EnrollDeviceOptions options, TimeProvider timeProvider, Func<RetryNotice, ValueTask>? onRetry = null, Jitter? jitter = null)
    {
        var random = jitter ?? Jitter.None;
        var retry = new RetryStrategyOptions
        {
            MaxRetryAttempts = options.MaxAttempts - 1,
            BackoffType = DelayBackoffType.Exponential,
            Delay = options.InitialBackoff,
            MaxDelay = options.MaxBackoff,
            UseJitter = options.UseJitter,
            Randomizer = random.Next,
            ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
            DelayGenerator = args => ValueTask.FromResult(ServerDelay(args.Outcome.Exception, options.UseJitter ? random : null)),
            OnRetry = args => onRetry?.Invoke(new RetryNotice(args.AttemptNumber + 1, args.RetryDelay, args.Outcome.Exception)) ?? ValueTask.CompletedTask,
        };

        var builder = new ResiliencePipelineBuilder { TimeProvider = timeProvider };
        if (options.MaxAttempts > 1)
        {
            builder.AddRetry(retry);
        }

        return builder.AddTimeout(options.AttemptTimeout).Build();
    }

    /// <summary>True for failures another attempt may fix.</summary>
    public static bool IsTransient(Exception exception) => exception switch
    {
        EnrollServerException server => !server.IsPermanent,
        EnrollConnectionException connection => !connection.CredentialsRefused && !connection.CertificateRefused,
        TimeoutRejectedException => true,
        _ => false,
    };

    /// <summary>The server's requested wait (with up to 20 % added at random), or null to use the exponential delay.</summary>
    internal static TimeSpan? ServerDelay(Exception? exception, Jitter? jitter)
    {
        if (exception is not EnrollServerException { RetryAfter: { } retryAfter })
        {
            return null;
        }

        return jitter is null ? retryAfter : jitter.Extend(retryAfter, RetryAfterJitter);
    }
}
