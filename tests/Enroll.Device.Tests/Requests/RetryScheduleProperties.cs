using Enroll.Device.Requests;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Microsoft.Extensions.Time.Testing;
using Polly.Timeout;

namespace Enroll.Device.Tests.Requests;

public sealed class RetryScheduleProperties
{
    /// <summary>Runs the real pipeline against an always-failing call on a fake clock and returns the delays it chose.</summary>
    private static List<TimeSpan> Schedule(int maxAttempts, TimeSpan initial, TimeSpan max, bool jitter, Func<int, Exception> failure)
    {
        var options = new EnrollDeviceOptions { ClientId = "p", MaxAttempts = maxAttempts, InitialBackoff = initial, MaxBackoff = max, UseJitter = jitter };
        var time = new FakeTimeProvider();
        var delays = new List<TimeSpan>();
        var pipeline = RetryPipelineFactory.Create(options, time, notice =>
        {
            delays.Add(notice.Delay);
            return ValueTask.CompletedTask;
        });
        var attempt = 0;
        var run = pipeline.ExecuteAsync(_ => throw failure(++attempt)).AsTask();
        while (!run.IsCompleted)
        {
            // Every delay is at most a day here; advancing by it always reaches the next attempt.
            time.Advance(TimeSpan.FromDays(1));
        }

        return delays;
    }

    [Property(MaxTest = 200)]
    public bool Backoff_WithJitter_StaysWithinZeroAndMaxBackoff(PositiveInt attemptsSeed, PositiveInt maxSeconds)
    {
        var attempts = 2 + (attemptsSeed.Get % 9);
        var max = TimeSpan.FromSeconds(1 + (maxSeconds.Get % 120));
        var delays = Schedule(attempts, TimeSpan.FromSeconds(1), max, jitter: true, _ => new TimeoutRejectedException());
        return delays.Count == attempts - 1 && delays.All(d => d > TimeSpan.Zero && d <= max);
    }

    [Property(MaxTest = 100)]
    public bool Backoff_WithoutJitter_DoublesFromTheInitialDelayUntilTheCap(PositiveInt attemptsSeed, PositiveInt maxSeconds)
    {
        var attempts = 2 + (attemptsSeed.Get % 9);
        var max = TimeSpan.FromSeconds(1 + (maxSeconds.Get % 120));
        var delays = Schedule(attempts, TimeSpan.FromSeconds(1), max, jitter: false, _ => new TimeoutRejectedException());
        return delays.Select((d, i) => d == TimeSpan.FromSeconds(Math.Min(Math.Pow(2, i), max.TotalSeconds))).All(ok => ok);
    }

    [Property(MaxTest = 200)]
    public bool ServerRetryAfter_IsHonouredWithAtMostTwentyPercentExtra(PositiveInt seconds, bool jitter)
    {
        var retryAfter = TimeSpan.FromSeconds(seconds.Get % 3600);
        var delays = Schedule(3, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), jitter, _ => new EnrollServerException("rate_limited", "slow down", retryAfter));
        return delays.All(d => d >= retryAfter && d <= retryAfter * (1 + RetryPipelineFactory.RetryAfterJitter) + TimeSpan.FromTicks(1) && (jitter || d == retryAfter));
    }

    [Property(MaxTest = 50)]
    public bool PermanentErrors_AreNeverRetried(PositiveInt attemptsSeed)
    {
        var delays = Schedule(2 + (attemptsSeed.Get % 9), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10), true, _ => new EnrollServerException("unauthorized", "no"));
        return delays.Count == 0;
    }

    [Property]
    public bool RefreshTime_FallsAtEightyPercentOfTheLifetimePlusOrMinusFive(PositiveInt lifetimeMinutes, NormalFloat randomSeed)
    {
        var issued = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var lifetime = TimeSpan.FromMinutes(lifetimeMinutes.Get);
        var random = Math.Abs(randomSeed.Get % 1.0);
        var at = RefreshSchedule.RefreshAt(issued, issued + lifetime, random);
        return at >= issued + (lifetime * 0.75) - TimeSpan.FromTicks(1) && at <= issued + (lifetime * 0.85) + TimeSpan.FromTicks(1);
    }
}
