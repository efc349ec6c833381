using Enroll.Server.Handlers;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Server.Tests.Handlers;

/// <summary>
/// Admission at the door (driven by a fake clock): a request is refused only when the backlog ahead of it, at the rate
/// the server sustains, would outlast its sender's patience; each refused sender gets its own slot after the backlog.
/// </summary>
public sealed class AdmissionControlTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 2, 12, 0, 0, TimeSpan.Zero));

    /// <summary>Serves <paramref name="perSecond"/> requests a second for <paramref name="seconds"/> seconds, in 250 ms steps.</summary>
    private AdmissionControl Sustaining(int perSecond, int seconds = 2)
    {
        var admission = new AdmissionControl(_clock);
        for (var step = 0; step < seconds * 4; step++)
        {
            for (var i = 0; i < perSecond / 4; i++)
            {
                admission.Served();
            }

            _clock.Advance(TimeSpan.FromMilliseconds(250));
        }

        // The clock now stands at the start of a new, empty bucket; serve one step more so the window ends with work.
        for (var i = 0; i < perSecond / 4; i++)
        {
            admission.Served();
        }

        return admission;
    }

    [Fact]
    public void ARate_IsMeasuredFromWhatWasServed()
    {
        var admission = Sustaining(400);
        Assert.InRange(admission.SustainedRate(), 360, 440);
    }

    [Fact]
    public void ASmallBacklog_OrNoKnownRate_IsAlwaysAdmitted()
    {
        var idle = new AdmissionControl(_clock);
        Assert.True(idle.TryAdmit(5_000, _clock.GetUtcNow().AddSeconds(1), out _));

        var slow = Sustaining(4);
        Assert.True(slow.TryAdmit(AdmissionControl.MinimumBacklog - 1, _clock.GetUtcNow().AddSeconds(1), out _));
    }

    [Fact]
    public void AFreshServer_JudgesNothingInItsFirstQuarterSecond_AndJudgesAfterIt()
    {
        // A burst at start-up: 100 served in the first 70 ms reads as 400/s, and 1,000 ahead as 2.5 s, past 0.7 of 3 s.
        var admission = new AdmissionControl(_clock);
        for (var i = 0; i < 100; i++)
        {
            admission.Served();
        }

        _clock.Advance(TimeSpan.FromMilliseconds(70));
        Assert.True(admission.TryAdmit(1_000, _clock.GetUtcNow().AddSeconds(3), out _));

        // Once the server has served for a bucket's length, the same backlog at the rate it shows is refused.
        _clock.Advance(AdmissionControl.FirstJudgement);
        admission.Served();
        Assert.False(admission.TryAdmit(5_000, _clock.GetUtcNow().AddSeconds(3), out _));
    }

    [Fact]
    public void ABacklogThatFitsTheSendersPatience_IsAdmitted_OneThatDoesNot_IsToldWhenToComeBack()
    {
        var admission = Sustaining(100);
        var expires = _clock.GetUtcNow().AddSeconds(10);

        // 500 ahead at 100/s: about 5 s, within 0.7 of 10 s.
        Assert.True(admission.TryAdmit(500, expires, out _));

        // 1,000 ahead: about 10 s, past its patience. Its slot comes after the backlog.
        Assert.False(admission.TryAdmit(1_000, expires, out var retryAfter));
        Assert.InRange(retryAfter.TotalSeconds, 8, 13);
        Assert.Equal(1, admission.Refused);
    }

    [Fact]
    public void WithoutAMessageExpiry_TheDevicesAttemptTimeoutIsAssumed()
    {
        var admission = Sustaining(100);
        Assert.True(admission.TryAdmit(600, null, out _));
        Assert.False(admission.TryAdmit(800, null, out _));
    }

    [Fact]
    public void RefusedSenders_GetSlotsOfTheirOwn_SpreadAtTheSustainedRate()
    {
        var admission = Sustaining(200);
        var expires = _clock.GetUtcNow().AddSeconds(5);
        var slots = new List<TimeSpan>();
        for (var i = 0; i < 400; i++)
        {
            Assert.False(admission.TryAdmit(2_000, expires, out var retryAfter));
            slots.Add(retryAfter);
        }

        // Each slot is later than the one before, by about 1 / rate; 400 slots at ~200/s span about two seconds.
        Assert.True(slots.Zip(slots.Skip(1)).All(p => p.Second > p.First));
        Assert.InRange((slots[^1] - slots[0]).TotalSeconds, 1.6, 2.4);
        Assert.InRange(slots[0].TotalSeconds, 8, 12);
    }

    [Fact]
    public void TheLongestWaitGiven_IsBounded()
    {
        var admission = Sustaining(4);
        Assert.False(admission.TryAdmit(100_000, _clock.GetUtcNow().AddSeconds(10), out var retryAfter));
        Assert.Equal(AdmissionControl.MaxRetryAfter, retryAfter);
    }

    [Fact]
    public void AfterAQuietSpell_TheRateIsMeasuredAgain_FromTheNewWork()
    {
        var admission = Sustaining(1_000);
        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, admission.SustainedRate());
        Assert.True(admission.TryAdmit(5_000, _clock.GetUtcNow().AddSeconds(10), out _));

        for (var i = 0; i < 10; i++)
        {
            admission.Served();
        }

        // 10 in the first quarter second of new work: 40/s, not 10 over the whole five-second window.
        Assert.InRange(admission.SustainedRate(), 39, 41);
    }

    [Fact]
    public void TheBacklogIsJudgedAtTheCapacityShownLately_NotAtAMomentarilyLowRate()
    {
        // Five full seconds at 1,000/s, then a quiet spell, then work resumes slowly (the CPU busy with connections).
        var admission = Sustaining(1_000, seconds: 6);
        _clock.Advance(TimeSpan.FromMinutes(1));
        for (var i = 0; i < 10; i++)
        {
            admission.Served();
        }

        Assert.InRange(admission.SustainedRate(), 39, 41);
        Assert.InRange(admission.Capacity(), 900, 1_100);

        // At 40/s, 5,000 ahead would take two minutes; at the capacity the server has shown, 5 s: admitted.
        Assert.True(admission.TryAdmit(5_000, _clock.GetUtcNow().AddSeconds(10), out _));

        // 9,000 ahead outlast the sender's patience even at that capacity: refused, with a slot where the backlog drains
        // at it, about 9 s, not four minutes away.
        Assert.False(admission.TryAdmit(9_000, _clock.GetUtcNow().AddSeconds(10), out var retryAfter));
        Assert.InRange(retryAfter.TotalSeconds, 8, 10);
    }

    [Fact]
    public void ACapacityShownLongAgo_IsForgotten()
    {
        var admission = Sustaining(1_000, seconds: 6);
        _clock.Advance(AdmissionControl.PeakMemory + TimeSpan.FromMinutes(1));
        for (var i = 0; i < 10; i++)
        {
            admission.Served();
        }

        Assert.InRange(admission.Capacity(), 39, 41);
        Assert.False(admission.TryAdmit(5_000, _clock.GetUtcNow().AddSeconds(10), out var retryAfter));
        Assert.InRange(retryAfter.TotalSeconds, 110, 140);
    }
}
