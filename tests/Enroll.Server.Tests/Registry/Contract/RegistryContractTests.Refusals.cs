using Enroll.Protocol.Admin;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static RefusalInfo Refusal(string kind, string? source, DateTimeOffset at, string? reason = null, long count = 1) =>
        new() { Kind = kind, Source = source, At = at, Reason = reason, Count = count };

    [Fact]
    public async Task Refusals_OfOneKindAndSourceWithinAMinute_FoldIntoOneRowWithTheirCount()
    {
        var minute = new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
        await Registry.RecordRefusalsAsync(
        [
            Refusal("rate_limited", "10.0.0.1", minute.AddSeconds(1), "first"),
            Refusal("rate_limited", "10.0.0.1", minute.AddSeconds(30), "latest"),
            Refusal("rate_limited", "10.0.0.1", minute.AddSeconds(10), "older", count: 3),
            Refusal("token_refused", "10.0.0.1", minute.AddSeconds(5)),
            Refusal("rate_limited", "10.0.0.2", minute.AddSeconds(5)),
            Refusal("rate_limited", null, minute.AddSeconds(6)),
        ]);

        // A second batch in the same minute adds to the row; the next minute starts a new one.
        await Registry.RecordRefusalsAsync([Refusal("rate_limited", "10.0.0.1", minute.AddSeconds(59.999), "last of the minute")]);
        await Registry.RecordRefusalsAsync([Refusal("rate_limited", "10.0.0.1", minute.AddMinutes(1), "next minute")]);
        await Registry.RecordRefusalsAsync([]);

        var rows = await Registry.ListRefusalsAsync(100);
        Assert.Equal(5, rows.Count);
        var folded = Assert.Single(rows, r => r.Kind == "rate_limited" && r.Source == "10.0.0.1" && r.At < minute.AddMinutes(1));
        Assert.Equal(6, folded.Count);
        Assert.Equal(minute.AddSeconds(59.999), folded.At);
        Assert.Equal("last of the minute", folded.Reason);
        var next = Assert.Single(rows, r => r.Kind == "rate_limited" && r.Source == "10.0.0.1" && r.At == minute.AddMinutes(1));
        Assert.Equal(1, next.Count);
        Assert.Equal("next minute", next.Reason);
        Assert.Equal(1, Assert.Single(rows, r => r.Kind == "token_refused").Count);
        Assert.Null(Assert.Single(rows, r => r.Source is null).Reason);
    }

    [Fact]
    public async Task Refusals_AStormOfOneSource_IsOneRowPerMinute()
    {
        var storm = Enumerable.Range(0, 3000).Select(i => Refusal("connection_refused", "203.0.113.9", Now.AddMilliseconds(i * 40), "bad_token")).ToList();
        foreach (var batch in storm.Chunk(500))
        {
            await Registry.RecordRefusalsAsync(batch);
        }

        var rows = await Registry.ListRefusalsAsync(100);
        Assert.Equal(2, rows.Count);
        Assert.Equal(3000, rows.Sum(r => r.Count));
    }

    [Fact]
    public async Task Refusals_AreListedNewestFirst_UpToTheLimit()
    {
        for (var i = 0; i < 5; i++)
        {
            await Registry.RecordRefusalsAsync([Refusal("credential_refused", $"client-{i}", Now.AddMinutes(i), "invalid signature")]);
        }

        var rows = await Registry.ListRefusalsAsync(3);
        Assert.Equal(["client-4", "client-3", "client-2"], rows.Select(r => r.Source));
        Assert.Equal(Now.AddMinutes(4), rows[0].At);
        Assert.Equal("invalid signature", rows[0].Reason);
    }

    [Fact]
    public async Task Refusals_Purge_DeletesOnlyRowsWhoseLatestRefusalIsOlder()
    {
        await Registry.RecordRefusalsAsync(
        [
            Refusal("rate_limited", "old", Now.AddHours(-25)),
            Refusal("rate_limited", "boundary", Now.AddHours(-24)),
            Refusal("rate_limited", "new", Now.AddMinutes(-1)),
        ]);

        Assert.Equal(1, await Registry.PurgeRefusalsAsync(Now.AddHours(-24)));
        Assert.Equal(0, await Registry.PurgeRefusalsAsync(Now.AddHours(-24)));
        Assert.Equal(["new", "boundary"], (await Registry.ListRefusalsAsync(10)).Select(r => r.Source));
    }

    [Fact]
    public async Task Series_Messages_CountEachMessageInTheMinuteItWasReceived_EmptyMinutesZero()
    {
        var device = await CreateDeviceAsync("client-m");
        var start = T0.AddHours(2); // the clock only moves forward
        Clock.SetUtcNow(start.AddMinutes(-61));
        await Registry.StoreMessageAsync(Message(device.DeviceId, "too-old"));
        Clock.SetUtcNow(start.AddMinutes(-59));
        await Registry.StoreMessageAsync(Message(device.DeviceId, "first-bucket"));
        Clock.SetUtcNow(start.AddSeconds(-1));
        await Registry.StoreMessageAsync(Message(device.DeviceId, "minute-58-a"));
        await Registry.StoreMessageAsync(Message(device.DeviceId, "minute-58-b"));
        await Registry.StoreMessageAsync(Message(device.DeviceId, "minute-58-b"));
        Clock.SetUtcNow(start.AddSeconds(20));
        await Registry.StoreMessageAsync(Message(device.DeviceId, "current"));
        Clock.SetUtcNow(start.AddSeconds(30));

        var series = await Registry.CountPerMinuteAsync(FleetSeries.Messages, Now);
        Assert.Equal(OverviewRows.Buckets, series.Counts.Count);
        Assert.Equal(start.AddMinutes(-59), series.Start);
        Assert.Equal(1, series.Counts[0]);
        Assert.Equal(2, series.Counts[58]);
        Assert.Equal(1, series.Counts[59]);
        Assert.Equal(4, series.Counts.Sum());

        // An hour on, every message is out of the window.
        Assert.All((await Registry.CountPerMinuteAsync(FleetSeries.Messages, Now.AddHours(1))).Counts, c => Assert.Equal(0, c));
    }

    [Fact]
    public async Task Series_Registrations_CountRegistrationsNotRefreshes()
    {
        var token = await CreateTokenAsync();
        var start = T0.AddHours(2); // the clock only moves forward
        Clock.SetUtcNow(start.AddMinutes(-2));
        var first = Register("client-r1", token);
        var firstToken = SignedFor(first.NewDeviceId);
        await Registry.RegisterDeviceAsync(first with { RegistrationToken = firstToken });
        var second = Register("client-r2", token);
        await Registry.RegisterDeviceAsync(second with { RegistrationToken = SignedFor(second.NewDeviceId) });

        Clock.SetUtcNow(start.AddSeconds(5));
        // A refresh: the successor of the first device's token is not a registration.
        await Registry.ReplaceRegistrationTokenAsync(firstToken.TokenId!, SignedFor(first.NewDeviceId), Now);
        // The first device registers again: that is one.
        await Registry.RegisterDeviceAsync(Register("client-r1", token) with { RegistrationToken = SignedFor(first.NewDeviceId) });

        var series = await Registry.CountPerMinuteAsync(FleetSeries.Registrations, Now);
        Assert.Equal(2, series.Counts[57]);
        Assert.Equal(1, series.Counts[59]);
        Assert.Equal(3, series.Counts.Sum());
    }

    [Fact]
    public async Task Series_Approvals_CountOperationsDecidedApproved_ByTheMinuteOfTheDecision()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var start = T0.AddHours(2); // the clock only moves forward
        Clock.SetUtcNow(start.AddMinutes(-10));
        var approved = Operation(token, "client-a1");
        var rejected = Operation(token, "client-a2");
        var pending = Operation(token, "client-a3");
        var auto = Operation(token, "client-a4") with { Status = Protocol.Messages.OperationStatus.Approved, DecidedAt = Now, DecidedBy = "auto-approve" };
        foreach (var operation in new[] { approved, rejected, pending, auto })
        {
            await Registry.CreateOperationAsync(operation);
        }

        Clock.SetUtcNow(start.AddMinutes(-3));
        await Registry.DecideOperationAsync(approved.OperationId, approve: true, null, "alice", NewId("dev"), Now);
        await Registry.DecideOperationAsync(rejected.OperationId, approve: false, "no", "alice", NewId("dev"), Now);
        Clock.SetUtcNow(start);

        var series = await Registry.CountPerMinuteAsync(FleetSeries.Approvals, Now);
        Assert.Equal(1, series.Counts[49]);
        Assert.Equal(1, series.Counts[56]);
        Assert.Equal(2, series.Counts.Sum());
        Assert.Equal(1, await Registry.CountPendingOperationsAsync(Now));
        Assert.Equal(0, await Registry.CountPendingOperationsAsync(Now.AddHours(2)));
    }

    [Fact]
    public async Task DevicesByStatus_CountsEachStatus()
    {
        var token = await CreateTokenAsync();
        await CreateDeviceAsync("client-s1", token);
        await CreateDeviceAsync("client-s2", token);
        var revoked = await CreateDeviceAsync("client-s3", token);
        await Registry.RevokeDeviceAsync(revoked.DeviceId, Now);

        var counts = await Registry.CountDevicesByStatusAsync();
        Assert.Equal(2, counts["active"]);
        Assert.Equal(1, counts["revoked"]);
        Assert.Equal(2, counts.Count);
    }
}
