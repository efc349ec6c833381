using Enroll.Protocol.Messages;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    [Fact]
    public async Task Operation_Created_IsFound_AndIsTheClientsPendingOneUntilItExpires()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var older = Operation(token, "client-a");
        await Registry.CreateOperationAsync(older);
        Clock.Advance(TimeSpan.FromMinutes(1));
        var operation = Operation(token, "client-a", desiredDeviceId: "dev-wanted") with { MetadataJson = """{"a":"b"}""" };

        await Registry.CreateOperationAsync(operation);

        Assert.Equal(operation, await Registry.FindOperationAsync(operation.OperationId));
        Assert.Null(await Registry.FindOperationAsync("op-unknown"));
        Assert.Equal(operation.OperationId, (await Registry.FindPendingOperationAsync("acme", "client-a", Now))!.OperationId);
        Assert.Null(await Registry.FindPendingOperationAsync("acme", "client-b", Now));
        Assert.Null(await Registry.FindPendingOperationAsync("globex", "client-a", Now));
        Assert.Null(await Registry.FindPendingOperationAsync("acme", "client-a", operation.ExpiresAt));
        await Assert.ThrowsAnyAsync<Exception>(() => Registry.CreateOperationAsync(operation));
    }

    [Fact]
    public async Task Operations_AreListedNewestFirst_ByStatus_UpToTheLimit()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var ids = new List<string>();
        for (var n = 0; n < 4; n++)
        {
            var operation = Operation(token, $"client-{n}");
            await Registry.CreateOperationAsync(operation);
            ids.Add(operation.OperationId);
            Clock.Advance(TimeSpan.FromSeconds(1));
        }

        await Registry.DecideOperationAsync(ids[1], approve: false, "no", "operator", NewId("dev"), Now);

        Assert.Equal([ids[3], ids[2], ids[1], ids[0]], (await Registry.ListOperationsAsync(null, 10)).Select(o => o.OperationId));
        Assert.Equal([ids[3], ids[2]], (await Registry.ListOperationsAsync(OperationStatus.Pending, 2)).Select(o => o.OperationId));
        Assert.Equal([ids[1]], (await Registry.ListOperationsAsync(OperationStatus.Rejected, 10)).Select(o => o.OperationId));
    }

    [Fact]
    public async Task Operation_Approved_CreatesTheDevice_CountsAUse_AndRecordsTheDecision()
    {
        var token = await CreateTokenAsync(maxUses: 2, autoApprove: false);
        var desired = Operation(token, "client-a", desiredDeviceId: "dev-wanted");
        var plain = Operation(token, "client-b");
        await Registry.CreateOperationAsync(desired);
        await Registry.CreateOperationAsync(plain);
        Clock.Advance(TimeSpan.FromMinutes(1));

        var first = await Registry.DecideOperationAsync(desired.OperationId, approve: true, null, "alice", "dev-minted-1", Now);
        var second = await Registry.DecideOperationAsync(plain.OperationId, approve: true, null, "alice", "dev-minted-2", Now);

        Assert.Equal(DecideOperationResult.Decided, first.Result);
        Assert.Equal(first.Operation, await Registry.FindOperationAsync(desired.OperationId));
        Assert.Equal(OperationStatus.Approved, first.Operation!.Status);
        Assert.Equal("dev-wanted", first.Operation.DeviceId);
        Assert.Equal("alice", first.Operation.DecidedBy);
        Assert.Equal(Now, first.Operation.DecidedAt);
        Assert.Equal("dev-minted-2", second.Operation!.DeviceId);
        var device = await Registry.FindDeviceByClientAsync("acme", "client-a");
        Assert.Equal("dev-wanted", device!.DeviceId);
        Assert.True(device.IsActive);
        Assert.Equal("sensor", device.Name);
        Assert.Equal(token.Id, device.ProvisioningTokenId);
        Assert.Equal(2, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task Operation_Rejected_KeepsTheReason_AndCreatesNothing()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var operation = Operation(token, "client-a");
        await Registry.CreateOperationAsync(operation);

        var outcome = await Registry.DecideOperationAsync(operation.OperationId, approve: false, "unknown site", "bob", NewId("dev"), Now);

        Assert.Equal(DecideOperationResult.Decided, outcome.Result);
        var stored = await Registry.FindOperationAsync(operation.OperationId);
        Assert.Equal(OperationStatus.Rejected, stored!.Status);
        Assert.Equal("unknown site", stored.Reason);
        Assert.Null(stored.DeviceId);
        Assert.Equal(0, await Registry.CountDevicesAsync());
        Assert.Equal(0, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task Operation_DecidedTwice_OrConcurrently_IsDecidedOnce()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var operation = Operation(token, "client-a");
        await Registry.CreateOperationAsync(operation);
        var other = Operation(token, "client-b");
        await Registry.CreateOperationAsync(other);

        var outcomes = await ConcurrentlyAsync(10, i => Registry.DecideOperationAsync(operation.OperationId, approve: i % 2 == 0, null, $"op-{i}", NewId("dev"), Now));
        await Registry.DecideOperationAsync(other.OperationId, approve: false, null, "bob", NewId("dev"), Now);
        var again = await Registry.DecideOperationAsync(other.OperationId, approve: true, null, "bob", NewId("dev"), Now);
        var unknown = await Registry.DecideOperationAsync("op-unknown", approve: true, null, "bob", NewId("dev"), Now);

        var decided = Assert.Single(outcomes, o => o.Result == DecideOperationResult.Decided);
        Assert.All(outcomes.Where(o => o != decided), o => Assert.Equal(DecideOperationResult.NotPending, o.Result));
        Assert.Equal(decided.Operation!.Status, (await Registry.FindOperationAsync(operation.OperationId))!.Status);
        Assert.Equal(decided.Operation.Status == OperationStatus.Approved ? 1 : 0, await Registry.CountDevicesAsync());
        Assert.Equal(DecideOperationResult.NotPending, again.Result);
        Assert.Equal(OperationStatus.Rejected, again.Operation!.Status);
        Assert.Equal(new DecideOperationOutcome(DecideOperationResult.NotFound, null), unknown);
    }

    [Fact]
    public async Task Operation_DecidedAfterItsExpiry_IsMarkedExpired()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var operation = Operation(token, "client-a", lifetime: TimeSpan.FromMinutes(5));
        await Registry.CreateOperationAsync(operation);
        Clock.Advance(TimeSpan.FromMinutes(5));

        var outcome = await Registry.DecideOperationAsync(operation.OperationId, approve: true, null, "alice", NewId("dev"), Now);

        Assert.Equal(DecideOperationResult.Expired, outcome.Result);
        Assert.Equal(OperationStatus.Expired, (await Registry.FindOperationAsync(operation.OperationId))!.Status);
        Assert.Equal(0, await Registry.CountDevicesAsync());
    }

    [Fact]
    public async Task Operation_Approved_PastMaxUses_OrForATakenDeviceId_StaysPending()
    {
        var token = await CreateTokenAsync(maxUses: 1, autoApprove: false);
        var existing = await CreateDeviceAsync("client-x", token);
        var usedUp = Operation(token, "client-a");
        var taken = Operation(await CreateTokenAsync(autoApprove: false), "client-b", desiredDeviceId: existing.DeviceId);
        await Registry.CreateOperationAsync(usedUp);
        await Registry.CreateOperationAsync(taken);

        var first = await Registry.DecideOperationAsync(usedUp.OperationId, approve: true, null, "alice", NewId("dev"), Now);
        var second = await Registry.DecideOperationAsync(taken.OperationId, approve: true, null, "alice", NewId("dev"), Now);

        Assert.Equal(DecideOperationResult.TokenUsedUp, first.Result);
        Assert.Equal(DecideOperationResult.DeviceIdTaken, second.Result);
        Assert.Equal(OperationStatus.Pending, (await Registry.FindOperationAsync(usedUp.OperationId))!.Status);
        Assert.Equal(OperationStatus.Pending, (await Registry.FindOperationAsync(taken.OperationId))!.Status);
        Assert.Equal(1, await Registry.CountDevicesAsync());
        Assert.Equal(1, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task Operation_ReprovisioningApproved_ReEnablesTheDevice_WithItsOldTokensRevoked()
    {
        var token = await CreateTokenAsync(maxUses: 1, autoApprove: false);
        var device = await CreateDeviceAsync("client-a", token);
        await Registry.RevokeDeviceAsync(device.DeviceId, Now);
        Clock.Advance(TimeSpan.FromMinutes(1));
        var operation = Operation(token, "client-a", reprovisionOf: device.DeviceId);
        await Registry.CreateOperationAsync(operation);

        var outcome = await Registry.DecideOperationAsync(operation.OperationId, approve: true, null, "alice", NewId("dev"), Now);

        Assert.Equal(DecideOperationResult.Decided, outcome.Result);
        Assert.Equal(device.DeviceId, outcome.Operation!.DeviceId);
        var stored = await Registry.FindDeviceAsync(device.DeviceId);
        Assert.True(stored!.IsActive);
        Assert.Null(stored.RevokedAt);
        Assert.Equal(IDeviceStore.TokensValidAfter(Now), stored.TokensValidAfter);
        Assert.Equal(1, await Registry.CountDevicesAsync());
        Assert.Equal(1, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task ExpireOperations_MarksThePendingOnesPastTheirExpiry_AndCountsThem()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var shortLived = Operation(token, "client-a", lifetime: TimeSpan.FromMinutes(1));
        var atTheInstant = Operation(token, "client-b", lifetime: TimeSpan.FromMinutes(2));
        var longLived = Operation(token, "client-c", lifetime: TimeSpan.FromHours(1));
        var decided = Operation(token, "client-d", lifetime: TimeSpan.FromMinutes(1));
        foreach (var operation in new[] { shortLived, atTheInstant, longLived, decided })
        {
            await Registry.CreateOperationAsync(operation);
        }

        await Registry.DecideOperationAsync(decided.OperationId, approve: false, null, "bob", NewId("dev"), Now);
        Clock.Advance(TimeSpan.FromMinutes(2));

        Assert.Equal(2, await Registry.ExpireOperationsAsync(Now));
        Assert.Equal(0, await Registry.ExpireOperationsAsync(Now));
        Assert.Equal(OperationStatus.Expired, (await Registry.FindOperationAsync(shortLived.OperationId))!.Status);
        Assert.Equal(OperationStatus.Expired, (await Registry.FindOperationAsync(atTheInstant.OperationId))!.Status);
        Assert.Equal(OperationStatus.Pending, (await Registry.FindOperationAsync(longLived.OperationId))!.Status);
        Assert.Equal(OperationStatus.Rejected, (await Registry.FindOperationAsync(decided.OperationId))!.Status);
    }

    [Fact]
    public async Task RegistrationTokenOfAnApprovedOperation_IsAttachedOnce_RecordedInTheLedger_AndCompletedByItsUse()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var operation = Operation(token, "client-a");
        await Registry.CreateOperationAsync(operation);
        var deviceId = (await Registry.DecideOperationAsync(operation.OperationId, approve: true, null, "alice", NewId("dev"), Now)).Operation!.DeviceId!;
        var first = SignedFor(deviceId);
        var second = SignedFor(deviceId);

        var attached = await ConcurrentlyAsync(2, i => Registry.AttachRegistrationTokenAsync(operation.OperationId, i == 0 ? "jwt-first" : "jwt-second", i == 0 ? first : second));

        var winner = attached[0].RegistrationTokenId == first.TokenId ? first : second;
        var loser = winner == first ? second : first;
        Assert.All(attached, a => Assert.Equal(winner.TokenId, a.RegistrationTokenId));
        Assert.All(attached, a => Assert.Equal(winner == first ? "jwt-first" : "jwt-second", a.RegistrationToken));
        Assert.Equal(winner.ExpiresAt, attached[0].RegistrationTokenExpiresAt);
        Assert.Equal(RegistrationTokenUse.Current, await Registry.UseRegistrationTokenAsync(winner.TokenId, deviceId, Now, TimeSpan.Zero));
        Assert.Equal(RegistrationTokenUse.Unknown, await Registry.UseRegistrationTokenAsync(loser.TokenId, deviceId, Now, TimeSpan.Zero));

        await Registry.CompleteOperationByTokenAsync(loser.TokenId, Now);
        Assert.Equal(OperationStatus.Approved, (await Registry.FindOperationAsync(operation.OperationId))!.Status);
        Clock.Advance(TimeSpan.FromSeconds(5));
        await Registry.CompleteOperationByTokenAsync(winner.TokenId, Now);

        var completed = await Registry.FindOperationAsync(operation.OperationId);
        Assert.Equal(OperationStatus.Completed, completed!.Status);
        Assert.Equal(Now, completed.CompletedAt);
        Assert.Null(completed.RegistrationToken);
        Assert.Equal(winner.TokenId, completed.RegistrationTokenId);
    }
}
