using Enroll.Protocol.Admin;
using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static DeviceOutboxInfo Report(string deviceId, DateTimeOffset at, long pending, long bytes = 100, double? oldest = 12.5, long quarantined = 0) =>
        new() { DeviceId = deviceId, ReportedAt = at, Pending = pending, PendingBytes = bytes, OldestAgeSeconds = oldest, Quarantined = quarantined };

    [Fact]
    public async Task DeviceStatus_Upsert_KeepsOneRowPerDevice_TheNewestReportWhateverTheArrivalOrder()
    {
        var device = await CreateDeviceAsync("client-status");
        Assert.Null(await Registry.FindDeviceStatusAsync(device.DeviceId));

        Assert.True(await Registry.SaveDeviceStatusAsync(Report(device.DeviceId, Now.AddSeconds(10), pending: 3, bytes: 300, quarantined: 1)));
        Assert.False(await Registry.SaveDeviceStatusAsync(Report(device.DeviceId, Now.AddSeconds(5), pending: 9, bytes: 900)));
        Assert.Equal(Report(device.DeviceId, Now.AddSeconds(10), pending: 3, bytes: 300, quarantined: 1), await Registry.FindDeviceStatusAsync(device.DeviceId));

        Assert.True(await Registry.SaveDeviceStatusAsync(Report(device.DeviceId, Now.AddSeconds(20), pending: 0, bytes: 0, oldest: null, quarantined: 2)));
        Assert.Equal(Report(device.DeviceId, Now.AddSeconds(20), pending: 0, bytes: 0, oldest: null, quarantined: 2), await Registry.FindDeviceStatusAsync(device.DeviceId));
        Assert.Null(await Registry.FindDeviceStatusAsync("dev-never-reported"));
    }

    [Fact]
    public async Task DeepestOutboxes_AreTheMostPendingFirst_ThenTheMostBytes_LimitedAndWithoutEmptyOnes()
    {
        Assert.Empty(await Registry.DeepestOutboxesAsync(10));
        await Registry.SaveDeviceStatusAsync(Report("dev-a", Now, pending: 5));
        await Registry.SaveDeviceStatusAsync(Report("dev-b", Now, pending: 10, bytes: 1_000));
        await Registry.SaveDeviceStatusAsync(Report("dev-c", Now, pending: 0, bytes: 0, oldest: null));
        await Registry.SaveDeviceStatusAsync(Report("dev-d", Now, pending: 10, bytes: 5_000));
        await Registry.SaveDeviceStatusAsync(Report("dev-e", Now, pending: 1));
        await Registry.SaveDeviceStatusAsync(Report("dev-e", Now.AddSeconds(1), pending: 50));

        Assert.Equal(["dev-e", "dev-d", "dev-b"], (await Registry.DeepestOutboxesAsync(3)).Select(r => r.DeviceId));
        var all = await Registry.DeepestOutboxesAsync(10);
        Assert.Equal(["dev-e", "dev-d", "dev-b", "dev-a"], all.Select(r => r.DeviceId));
        Assert.Equal(50, all[0].Pending);
    }

    [Fact]
    public async Task DeviceHistory_TellsOperationsRegistrationsAndRevocation_NewestFirst_AndPagesWithoutGapsOrRepeats()
    {
        var token = await CreateTokenAsync(autoApprove: false);
        var operation = Operation(token, "client-h");
        await Registry.CreateOperationAsync(operation);
        Clock.Advance(TimeSpan.FromSeconds(2));
        var decided = await Registry.DecideOperationAsync(operation.OperationId, approve: true, null, "alice", NewId("dev"), Now);
        var deviceId = decided.Operation!.DeviceId!;
        Clock.Advance(TimeSpan.FromSeconds(2));
        var provisioned = SignedFor(deviceId);
        await Registry.AttachRegistrationTokenAsync(operation.OperationId, "jwt-1", provisioned);
        await Registry.AppendAuditAsync(new AuditEntry { At = Now, Operator = "alice", Action = "operation.approve", Target = operation.OperationId, Status = 200 });

        // Refreshed: a replacement token is not a registration.
        Clock.Advance(TimeSpan.FromSeconds(2));
        await Registry.ReplaceRegistrationTokenAsync(provisioned.TokenId, SignedFor(deviceId), Now);

        // Re-registered with its Device ID.
        Clock.Advance(TimeSpan.FromSeconds(2));
        var again = await Registry.RegisterDeviceAsync(Register("client-h", deviceId: deviceId) with { RegistrationToken = SignedFor(deviceId) });
        Assert.Equal(deviceId, again.Device!.DeviceId);

        // Re-provisioning asked for, rejected; then revoked by an operator; another device's audit entry is not in it.
        Clock.Advance(TimeSpan.FromSeconds(2));
        var reprovision = Operation(token, "client-h", reprovisionOf: deviceId);
        await Registry.CreateOperationAsync(reprovision);
        Clock.Advance(TimeSpan.FromSeconds(2));
        await Registry.DecideOperationAsync(reprovision.OperationId, approve: false, "not this one", "bob", NewId("dev"), Now);
        Clock.Advance(TimeSpan.FromSeconds(2));
        await Registry.RevokeDeviceAsync(deviceId, Now);
        await Registry.AppendAuditAsync(new AuditEntry { At = Now, Operator = "bob", Action = "device.revoke", Target = deviceId, Status = 200 });
        await Registry.AppendAuditAsync(new AuditEntry { At = Now, Operator = "bob", Action = "device.revoke", Target = deviceId + "x", Status = 200 });
        await Registry.AppendAuditAsync(new AuditEntry { At = Now, Operator = "bob", Action = "file.delete", Target = deviceId + " file_1", Status = 200 });

        var history = await Registry.ListDeviceHistoryAsync(deviceId, 100, null);

        Assert.Equal(history.OrderByDescending(e => e.At).Select(e => e.At), history.Select(e => e.At));
        Assert.Equal(history.Count, history.Select(e => e.Id).Distinct().Count());
        // Oldest first; entries of one instant come in the store's order (its sort key), the same in every store.
        Assert.Equal(
            [
                "operation.created", "device.created", "operation.approved", "audit.operation.approve", "device.registered",
                "device.registered", "operation.created", "operation.rejected", "audit.device.revoke", "audit.file.delete", "device.revoked",
            ],
            history.Select(e => e.Kind).Reverse());
        var approval = Assert.Single(history, e => e.Kind == "operation.approved");
        Assert.Equal(("alice", operation.OperationId, token.Id, false, "client-h"), (approval.By, approval.OperationId, approval.ProvisioningTokenId, approval.Reprovision, approval.ClientId));
        var rejection = Assert.Single(history, e => e.Kind == "operation.rejected");
        Assert.Equal(("bob", "not this one", true), (rejection.By, rejection.Detail, rejection.Reprovision));
        Assert.Equal(
            [("re-registration", "device", null), ("provisioned", null, operation.OperationId)],
            history.Where(e => e.Kind == "device.registered").Select(e => (e.Detail, e.By, e.OperationId)));
        Assert.Equal(Now, history[0].At);

        // Pages of 3 add up to the whole, in order.
        var paged = new List<DeviceHistoryEntry>();
        DeviceHistoryCursor? before = null;
        for (var page = 0; page < 10; page++)
        {
            var items = await Registry.ListDeviceHistoryAsync(deviceId, 3, before);
            Assert.True(items.Count <= 3);
            paged.AddRange(items);
            if (items.Count < 3)
            {
                break;
            }

            Assert.True(DeviceHistoryCursor.TryParse(items[^1].Id, out before));
        }

        Assert.Equal(history.Select(e => e.Id), paged.Select(e => e.Id));
        Assert.Empty(await Registry.ListDeviceHistoryAsync("dev-unknown", 10, null));
    }

    [Fact]
    public async Task LiveRegistrationTokens_AreTheOnesNotReplacedNorExpired_NewestFirst()
    {
        // Registered long ago (that token expired since), re-registered (a second token), then refreshed (the second is
        // replaced by the third, the one in force); another device's token is not listed.
        var first = Register("client-tokens");
        var expired = SignedFor(first.NewDeviceId, Now.AddDays(-100));
        var device = (await Registry.RegisterDeviceAsync(first with { RegistrationToken = expired })).Device!;
        Assert.Equal(first.NewDeviceId, device.DeviceId);
        var replaced = SignedFor(device.DeviceId, Now.AddSeconds(-30));
        await Registry.RegisterDeviceAsync(Register("client-tokens", deviceId: device.DeviceId) with { RegistrationToken = replaced });
        var current = SignedFor(device.DeviceId, Now.AddSeconds(-10));
        await Registry.ReplaceRegistrationTokenAsync(replaced.TokenId, current, Now);
        await Registry.RegisterDeviceAsync(Register("client-other") with { RegistrationToken = SignedFor("dev-other") });

        var live = await Registry.ListLiveRegistrationTokensAsync(device.DeviceId, Now, 5);

        var only = Assert.Single(live);
        Assert.Equal((current.TokenId, current.IssuedAt, current.ExpiresAt), (only.TokenId, only.IssuedAt, only.ExpiresAt));
        Assert.Empty(await Registry.ListLiveRegistrationTokensAsync(device.DeviceId, current.ExpiresAt, 5));
    }
}
