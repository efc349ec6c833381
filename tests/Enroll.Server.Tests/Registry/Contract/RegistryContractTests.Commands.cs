using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static readonly TimeSpan Hour = TimeSpan.FromHours(1);

    private async Task<CommandRecord> EnqueueAsync(string deviceId, string name = "reboot", string? payload = null, TimeSpan? ttl = null)
    {
        var outcome = await Registry.EnqueueCommandAsync(deviceId, name, payload, ttl ?? Hour, Now);
        Assert.Equal(EnqueueCommandResult.Queued, outcome.Result);
        return outcome.Command!;
    }

    [Fact]
    public async Task Enqueue_StoresAQueuedCommandWithItsExpiry_AndGetReturnsIt()
    {
        var device = await CreateDeviceAsync("cmd-enqueue");

        var outcome = await Registry.EnqueueCommandAsync(device.DeviceId, "set-rate", """{"rate":5}""", TimeSpan.FromMinutes(10), Now);

        Assert.Equal(EnqueueCommandResult.Queued, outcome.Result);
        var command = outcome.Command!;
        Assert.StartsWith("cmd_", command.CommandId, StringComparison.Ordinal);
        Assert.Equal(new CommandRecord(command.CommandId, device.DeviceId, "set-rate", """{"rate":5}""", CommandStatuses.Queued, Now, Now + TimeSpan.FromMinutes(10)), command);
        Assert.Equal(command, await Registry.GetCommandAsync(command.CommandId));
        Assert.Null(await Registry.GetCommandAsync("cmd_nobody"));
    }

    [Fact]
    public async Task Enqueue_ForAnUnknownDevice_IsRefusedAndStoresNothing()
    {
        var outcome = await Registry.EnqueueCommandAsync("dev-nobody", "reboot", null, Hour, Now);

        Assert.Equal(new EnqueueCommandOutcome(EnqueueCommandResult.NoDevice), outcome);
        Assert.Empty(await Registry.ListCommandsAsync(null, null, 10));
    }

    [Fact]
    public async Task Enqueue_The101stOutstanding_IsRefused_AndAFinishedOneMakesRoom()
    {
        var device = await CreateDeviceAsync("cmd-limit");
        var other = await CreateDeviceAsync("cmd-limit-other");
        var first = await EnqueueAsync(device.DeviceId);
        for (var i = 1; i < CommandLimits.MaxOutstandingPerDevice; i++)
        {
            await EnqueueAsync(device.DeviceId);
        }

        var refused = await Registry.EnqueueCommandAsync(device.DeviceId, "one-more", null, Hour, Now);
        var otherDevice = await Registry.EnqueueCommandAsync(other.DeviceId, "fine", null, Hour, Now);

        Assert.Equal(new EnqueueCommandOutcome(EnqueueCommandResult.TooMany), refused);
        Assert.Equal(EnqueueCommandResult.Queued, otherDevice.Result);
        Assert.Equal(CommandLimits.MaxOutstandingPerDevice, (await Registry.ListCommandsAsync(device.DeviceId, null, 1000)).Count);

        // Sent ones still count; a finished one does not.
        await Registry.TakeDeliverableCommandsAsync(device.DeviceId, Now);
        Assert.Equal(EnqueueCommandResult.TooMany, (await Registry.EnqueueCommandAsync(device.DeviceId, "one-more", null, Hour, Now)).Result);
        await Registry.RecordCommandResultAsync(first.CommandId, device.DeviceId, CommandStatuses.Succeeded, null, null, Now);
        Assert.Equal(EnqueueCommandResult.Queued, (await Registry.EnqueueCommandAsync(device.DeviceId, "one-more", null, Hour, Now)).Result);
    }

    [Fact]
    public async Task ConcurrentEnqueues_ToOneDeviceAtTheLimit_NeverPassIt()
    {
        var device = await CreateDeviceAsync("cmd-concurrent");
        for (var i = 0; i < CommandLimits.MaxOutstandingPerDevice - 5; i++)
        {
            await EnqueueAsync(device.DeviceId);
        }

        var outcomes = await ConcurrentlyAsync(20, i => Registry.EnqueueCommandAsync(device.DeviceId, $"c{i}", null, Hour, Now));

        Assert.Equal(5, outcomes.Count(o => o.Result == EnqueueCommandResult.Queued));
        Assert.Equal(15, outcomes.Count(o => o.Result == EnqueueCommandResult.TooMany));
        Assert.Equal(CommandLimits.MaxOutstandingPerDevice, (await Registry.ListCommandsAsync(device.DeviceId, null, 1000)).Count);
    }

    [Fact]
    public async Task TakeDeliverable_GivesQueuedAndSentUnexpiredOldestFirst_AndMarksThemSent()
    {
        var device = await CreateDeviceAsync("cmd-take");
        var other = await CreateDeviceAsync("cmd-take-other");
        var shortLived = await EnqueueAsync(device.DeviceId, "short", ttl: TimeSpan.FromSeconds(5));
        Clock.Advance(TimeSpan.FromSeconds(1));
        var first = await EnqueueAsync(device.DeviceId, "first", """{"n":1}""");
        var second = await EnqueueAsync(device.DeviceId, "second");
        var canceled = await EnqueueAsync(device.DeviceId, "canceled");
        await Registry.CancelCommandAsync(canceled.CommandId, Now);
        await EnqueueAsync(other.DeviceId, "not-mine");
        Clock.Advance(TimeSpan.FromSeconds(10));
        var third = await EnqueueAsync(device.DeviceId, "third");
        var takenAt = Now;

        var taken = await Registry.TakeDeliverableCommandsAsync(device.DeviceId, takenAt);

        Assert.Equal([first.CommandId, second.CommandId, third.CommandId], taken.Select(c => c.CommandId));
        Assert.All(taken, c => Assert.Equal((CommandStatuses.Sent, takenAt), (c.State, c.SentAt)));
        Assert.Equal(first with { State = CommandStatuses.Sent, SentAt = takenAt }, taken[0]);
        Assert.Equal(taken[1], await Registry.GetCommandAsync(second.CommandId));
        Assert.Equal(CommandStatuses.Queued, (await Registry.GetCommandAsync(shortLived.CommandId))!.State); // expired, not yet swept: never delivered

        // A second request delivers the sent ones again (the device de-duplicates by ID); their sent_at stays.
        Clock.Advance(TimeSpan.FromSeconds(1));
        var again = await Registry.TakeDeliverableCommandsAsync(device.DeviceId, Now);
        Assert.Equal(taken, again);
    }

    [Fact]
    public async Task EnqueueAsSent_StoresItSent_AndReturnToQueueUndoesOnlyThat()
    {
        var device = await CreateDeviceAsync("cmd-as-sent");
        var outcome = await Registry.EnqueueCommandAsync(device.DeviceId, "reboot", null, Hour, Now, sentAt: Now);
        var command = outcome.Command!;

        Assert.Equal((CommandStatuses.Sent, Now), (command.State, command.SentAt));
        Assert.Equal(command, await Registry.GetCommandAsync(command.CommandId));
        Assert.False(await Registry.MarkCommandSentAsync(command.CommandId, Now + Hour)); // already sent

        // A failed publish: back in the queue, delivered by the next commands/pending.
        Assert.True(await Registry.ReturnCommandToQueueAsync(command.CommandId));
        Assert.Equal(command with { State = CommandStatuses.Queued, SentAt = null }, await Registry.GetCommandAsync(command.CommandId));
        Assert.False(await Registry.ReturnCommandToQueueAsync(command.CommandId)); // no longer sent
        var taken = Assert.Single(await Registry.TakeDeliverableCommandsAsync(device.DeviceId, Now));
        Assert.Equal(command.CommandId, taken.CommandId);

        // A finished command is never returned to the queue.
        await Registry.RecordCommandResultAsync(command.CommandId, device.DeviceId, CommandStatuses.Succeeded, null, null, Now);
        Assert.False(await Registry.ReturnCommandToQueueAsync(command.CommandId));
        Assert.Equal(CommandStatuses.Succeeded, (await Registry.GetCommandAsync(command.CommandId))!.State);
        Assert.False(await Registry.ReturnCommandToQueueAsync("cmd_nobody"));
    }

    [Fact]
    public async Task MarkSent_MovesOnlyAQueuedCommand()
    {
        var device = await CreateDeviceAsync("cmd-mark");
        var command = await EnqueueAsync(device.DeviceId);

        Assert.True(await Registry.MarkCommandSentAsync(command.CommandId, Now));
        Assert.False(await Registry.MarkCommandSentAsync(command.CommandId, Now + Hour));
        Assert.Equal(command with { State = CommandStatuses.Sent, SentAt = Now }, await Registry.GetCommandAsync(command.CommandId));
        await Registry.CancelCommandAsync(command.CommandId, Now);
        Assert.False(await Registry.MarkCommandSentAsync(command.CommandId, Now));
        Assert.False(await Registry.MarkCommandSentAsync("cmd_nobody", Now));
    }

    [Fact]
    public async Task RecordResult_FinishesTheCommand_AndASecondResultAnswersTheFirst()
    {
        var device = await CreateDeviceAsync("cmd-result");
        var command = await EnqueueAsync(device.DeviceId);
        await Registry.TakeDeliverableCommandsAsync(device.DeviceId, Now);
        Clock.Advance(TimeSpan.FromSeconds(2));
        var finishedAt = Now;

        var recorded = await Registry.RecordCommandResultAsync(command.CommandId, device.DeviceId, CommandStatuses.Failed, """{"code":7}""", "disk full", finishedAt);
        Clock.Advance(TimeSpan.FromSeconds(2));
        var repeated = await Registry.RecordCommandResultAsync(command.CommandId, device.DeviceId, CommandStatuses.Succeeded, null, null, Now);

        var expected = command with { State = CommandStatuses.Failed, SentAt = finishedAt - TimeSpan.FromSeconds(2), FinishedAt = finishedAt, ResultPayload = """{"code":7}""", ResultMessage = "disk full" };
        Assert.Equal(new CommandChangeOutcome(CommandResultOutcome.Changed, expected), recorded);
        Assert.Equal(new CommandChangeOutcome(CommandResultOutcome.AlreadyFinished, expected), repeated);
        Assert.Equal(expected, await Registry.GetCommandAsync(command.CommandId));
    }

    [Fact]
    public async Task RecordResult_FromAnotherDevice_OrForAnUnknownId_IsRefusedAndChangesNothing()
    {
        var device = await CreateDeviceAsync("cmd-owner");
        var intruder = await CreateDeviceAsync("cmd-intruder");
        var command = await EnqueueAsync(device.DeviceId);
        var sent = (await Registry.TakeDeliverableCommandsAsync(device.DeviceId, Now)).Single();

        Assert.Equal(CommandChangeOutcome.WrongDevice, await Registry.RecordCommandResultAsync(command.CommandId, intruder.DeviceId, CommandStatuses.Succeeded, null, null, Now));
        Assert.Equal(CommandChangeOutcome.NotFound, await Registry.RecordCommandResultAsync("cmd_nobody", device.DeviceId, CommandStatuses.Succeeded, null, null, Now));
        Assert.Equal(sent, await Registry.GetCommandAsync(command.CommandId));
    }

    [Fact]
    public async Task Cancel_MovesQueuedAndSent_ButNotAFinishedCommand()
    {
        var device = await CreateDeviceAsync("cmd-cancel");
        var queued = await EnqueueAsync(device.DeviceId, "a");
        var sent = await EnqueueAsync(device.DeviceId, "b");
        await Registry.MarkCommandSentAsync(sent.CommandId, Now);
        var done = await EnqueueAsync(device.DeviceId, "c");
        await Registry.RecordCommandResultAsync(done.CommandId, device.DeviceId, CommandStatuses.Rejected, null, "no handler", Now);
        var doneRecord = await Registry.GetCommandAsync(done.CommandId);
        Clock.Advance(TimeSpan.FromSeconds(1));

        var canceledQueued = await Registry.CancelCommandAsync(queued.CommandId, Now);
        var canceledSent = await Registry.CancelCommandAsync(sent.CommandId, Now);
        var finished = await Registry.CancelCommandAsync(done.CommandId, Now);

        Assert.Equal(new CommandChangeOutcome(CommandResultOutcome.Changed, queued with { State = CommandStatuses.Canceled, FinishedAt = Now }), canceledQueued);
        Assert.Equal((CommandResultOutcome.Changed, CommandStatuses.Canceled), (canceledSent.Result, canceledSent.Command!.State));
        Assert.Equal(new CommandChangeOutcome(CommandResultOutcome.AlreadyFinished, doneRecord), finished);
        Assert.Equal(CommandChangeOutcome.NotFound, await Registry.CancelCommandAsync("cmd_nobody", Now));
        Assert.Empty(await Registry.TakeDeliverableCommandsAsync(device.DeviceId, Now));

        // A result for a canceled command answers canceled.
        var late = await Registry.RecordCommandResultAsync(sent.CommandId, device.DeviceId, CommandStatuses.Succeeded, null, null, Now);
        Assert.Equal((CommandResultOutcome.AlreadyFinished, CommandStatuses.Canceled), (late.Result, late.Command!.State));
    }

    [Fact]
    public async Task ExpireDue_ExpiresQueuedAndSentPastTheirExpiry_Only()
    {
        var device = await CreateDeviceAsync("cmd-expire");
        var soon = await EnqueueAsync(device.DeviceId, "soon", ttl: TimeSpan.FromSeconds(10));
        var sentSoon = await EnqueueAsync(device.DeviceId, "sent-soon", ttl: TimeSpan.FromSeconds(10));
        await Registry.MarkCommandSentAsync(sentSoon.CommandId, Now);
        var doneSoon = await EnqueueAsync(device.DeviceId, "done-soon", ttl: TimeSpan.FromSeconds(10));
        await Registry.RecordCommandResultAsync(doneSoon.CommandId, device.DeviceId, CommandStatuses.Succeeded, null, null, Now);
        var later = await EnqueueAsync(device.DeviceId, "later", ttl: Hour);
        Clock.Advance(TimeSpan.FromSeconds(10));

        var expired = await Registry.ExpireDueCommandsAsync(Now);

        Assert.Equal(new[] { soon.CommandId, sentSoon.CommandId }.Order(StringComparer.Ordinal), expired.Select(c => c.CommandId).Order(StringComparer.Ordinal));
        Assert.All(expired, c => Assert.Equal((CommandStatuses.Expired, (DateTimeOffset?)Now), (c.State, c.FinishedAt)));
        Assert.Equal(soon with { State = CommandStatuses.Expired, FinishedAt = Now }, await Registry.GetCommandAsync(soon.CommandId));
        Assert.Equal(CommandStatuses.Succeeded, (await Registry.GetCommandAsync(doneSoon.CommandId))!.State);
        Assert.Equal(CommandStatuses.Queued, (await Registry.GetCommandAsync(later.CommandId))!.State);
        Assert.Empty(await Registry.ExpireDueCommandsAsync(Now));
        Assert.Equal([later.CommandId], (await Registry.TakeDeliverableCommandsAsync(device.DeviceId, Now)).Select(c => c.CommandId));
        var late = await Registry.RecordCommandResultAsync(soon.CommandId, device.DeviceId, CommandStatuses.Succeeded, null, null, Now);
        Assert.Equal((CommandResultOutcome.AlreadyFinished, CommandStatuses.Expired), (late.Result, late.Command!.State));
    }

    [Fact]
    public async Task List_FiltersByDeviceAndState_InQueueOrder_WithPaging()
    {
        var a = await CreateDeviceAsync("cmd-list-a");
        var b = await CreateDeviceAsync("cmd-list-b");
        var commands = new List<CommandRecord>();
        for (var i = 0; i < 5; i++)
        {
            commands.Add(await EnqueueAsync(i % 2 == 0 ? a.DeviceId : b.DeviceId, $"c{i}"));
        }

        await Registry.CancelCommandAsync(commands[2].CommandId, Now);

        var all = await Registry.ListCommandsAsync(null, null, 100);
        var ofA = await Registry.ListCommandsAsync(a.DeviceId, null, 100);
        var queuedOfA = await Registry.ListCommandsAsync(a.DeviceId, CommandStatuses.Queued, 100);
        var canceled = await Registry.ListCommandsAsync(null, CommandStatuses.Canceled, 100);
        var page1 = await Registry.ListCommandsAsync(null, null, 2);
        var page2 = await Registry.ListCommandsAsync(null, null, 2, page1[^1].CommandId);
        var page3 = await Registry.ListCommandsAsync(null, null, 2, page2[^1].CommandId);

        Assert.Equal(commands.Select(c => c.CommandId), all.Select(c => c.CommandId));
        Assert.Equal([commands[0].CommandId, commands[2].CommandId, commands[4].CommandId], ofA.Select(c => c.CommandId));
        Assert.Equal([commands[0].CommandId, commands[4].CommandId], queuedOfA.Select(c => c.CommandId));
        Assert.Equal([commands[2].CommandId], canceled.Select(c => c.CommandId));
        Assert.Equal(commands.Select(c => c.CommandId), page1.Concat(page2).Concat(page3).Select(c => c.CommandId));
        Assert.Single(page3);
    }
}
