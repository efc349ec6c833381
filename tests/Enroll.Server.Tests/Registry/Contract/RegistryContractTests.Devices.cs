using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    [Fact]
    public async Task Register_NewClient_CreatesItsDevice_AndCountsAUseOfTheToken()
    {
        var token = await CreateTokenAsync(maxUses: 3);
        var command = Register("client-a", token, name: "pump") with { MetadataJson = """{"site":"north"}""" };

        var outcome = await Registry.RegisterDeviceAsync(command);

        Assert.Equal(RegisterDeviceResult.Created, outcome.Result);
        var expected = new DeviceRecord
        {
            DeviceId = command.NewDeviceId,
            OrgId = "acme",
            ClientId = "client-a",
            Name = "pump",
            MetadataJson = """{"site":"north"}""",
            Status = DeviceStatuses.Active,
            ProvisioningTokenId = token.Id,
            CreatedAt = Now,
            UpdatedAt = Now,
            LastRegisteredAt = Now,
        };
        Assert.Equal(expected, outcome.Device);
        Assert.Equal(expected, await Registry.FindDeviceAsync(command.NewDeviceId));
        Assert.Equal(expected, await Registry.FindDeviceByClientAsync("acme", "client-a"));
        Assert.Null(await Registry.FindDeviceByClientAsync("other-org", "client-a"));
        Assert.Equal(1, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task Register_SameClientAgain_UpdatesItsDevice_WithoutAnotherUse()
    {
        var token = await CreateTokenAsync();
        var first = (await Registry.RegisterDeviceAsync(Register("client-a", token, name: "pump"))).Device!;
        Clock.Advance(TimeSpan.FromMinutes(3));

        var again = await Registry.RegisterDeviceAsync(Register("client-a", token, name: null) with { MetadataJson = "{}" });
        var named = await Registry.RegisterDeviceAsync(Register("client-a", token, deviceId: first.DeviceId, name: "pump 2"));

        Assert.Equal(RegisterDeviceResult.Updated, again.Result);
        Assert.Equal(first.DeviceId, again.Device!.DeviceId);
        Assert.Equal("pump", again.Device.Name);
        Assert.Equal("{}", again.Device.MetadataJson);
        Assert.Equal(Now, again.Device.LastRegisteredAt);
        Assert.Equal(RegisterDeviceResult.Updated, named.Result);
        var stored = await Registry.FindDeviceAsync(first.DeviceId);
        Assert.Equal(named.Device, stored);
        Assert.Equal("pump 2", stored!.Name);
        Assert.Equal(first.CreatedAt, stored.CreatedAt);
        Assert.Equal(Now, stored.UpdatedAt);
        Assert.Equal(1, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
        Assert.Equal(1, await Registry.CountDevicesAsync());
    }

    [Fact]
    public async Task Register_NamedDevice_IsRefused_WhenUnknownOfAnotherOrgOfAnotherClientOrRevoked()
    {
        var device = await CreateDeviceAsync("client-a");
        var revoked = await CreateDeviceAsync("client-r");
        await Registry.RevokeDeviceAsync(revoked.DeviceId, Now);

        var unknown = await Registry.RegisterDeviceAsync(Register("client-a", deviceId: "dev-unknown"));
        var otherOrg = await Registry.RegisterDeviceAsync(Register("client-a", orgId: "globex", deviceId: device.DeviceId));
        var otherClient = await Registry.RegisterDeviceAsync(Register("client-b", deviceId: device.DeviceId));
        var byRevokedClient = await Registry.RegisterDeviceAsync(Register("client-r"));

        Assert.Equal(new RegisterDeviceOutcome(RegisterDeviceResult.NotFound, null), unknown);
        Assert.Equal(new RegisterDeviceOutcome(RegisterDeviceResult.NotFound, null), otherOrg);
        Assert.Equal(RegisterDeviceResult.OtherClient, otherClient.Result);
        Assert.Equal(RegisterDeviceResult.Revoked, byRevokedClient.Result);
        Assert.Equal(revoked.DeviceId, byRevokedClient.Device!.DeviceId);
        Assert.Equal(2, await Registry.CountDevicesAsync());
    }

    [Fact]
    public async Task Register_PastTheTokensMaxUses_CreatesNothing_ButReRegistersAnExistingDevice()
    {
        var token = await CreateTokenAsync(maxUses: 1);
        var device = await CreateDeviceAsync("client-a", token);

        var refused = await Registry.RegisterDeviceAsync(Register("client-b", token));
        var again = await Registry.RegisterDeviceAsync(Register("client-a", token));

        Assert.Equal(new RegisterDeviceOutcome(RegisterDeviceResult.TokenUsedUp, null), refused);
        Assert.Null(await Registry.FindDeviceByClientAsync("acme", "client-b"));
        Assert.Equal(RegisterDeviceResult.Updated, again.Result);
        Assert.Equal(device.DeviceId, again.Device!.DeviceId);
        Assert.Equal(1, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task Register_TwentyClientsAtOnce_OnAFiveUseToken_CreateExactlyFiveDevices()
    {
        var token = await CreateTokenAsync(maxUses: 5);

        var outcomes = await ConcurrentlyAsync(20, i => Registry.RegisterDeviceAsync(Register($"client-{i}", token)));

        Assert.Equal(5, outcomes.Count(o => o.Result == RegisterDeviceResult.Created));
        Assert.Equal(15, outcomes.Count(o => o.Result == RegisterDeviceResult.TokenUsedUp));
        Assert.Equal(5, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
        Assert.Equal(5, await Registry.CountDevicesAsync());
    }

    [Fact]
    public async Task Register_OneClientTwentyTimesAtOnce_EndsWithOneDevice_AndOneUse()
    {
        var token = await CreateTokenAsync(maxUses: 5);

        var outcomes = await ConcurrentlyAsync(20, _ => Registry.RegisterDeviceAsync(Register("client-a", token)));

        Assert.Equal(1, outcomes.Count(o => o.Result == RegisterDeviceResult.Created));
        Assert.Equal(19, outcomes.Count(o => o.Result == RegisterDeviceResult.Updated));
        Assert.Single(outcomes.Select(o => o.Device!.DeviceId).Distinct());
        Assert.Equal(1, await Registry.CountDevicesAsync());
        Assert.Equal(1, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task Register_OneClientAtOnce_WithTokensSignedForNewDevices_OneWins_TheOthersAreStaleWithTheWinner()
    {
        var token = await CreateTokenAsync(maxUses: 5);
        var commands = Enumerable.Range(0, 10).Select(_ => Register("client-a", token)).Select(c => c with { RegistrationToken = SignedFor(c.NewDeviceId) }).ToArray();

        var outcomes = await ConcurrentlyAsync(commands.Length, i => Registry.RegisterDeviceAsync(commands[i]));

        var winner = Assert.Single(outcomes, o => o.Result == RegisterDeviceResult.Created).Device!;
        Assert.All(outcomes.Where(o => o.Result != RegisterDeviceResult.Created), o =>
        {
            Assert.Equal(RegisterDeviceResult.Stale, o.Result);
            Assert.Equal(winner.DeviceId, o.Device!.DeviceId);
        });
        for (var i = 0; i < commands.Length; i++)
        {
            // Only the winner's token is in the ledger; a stale command wrote nothing.
            var expected = outcomes[i].Result == RegisterDeviceResult.Created ? RegistrationTokenUse.Current : RegistrationTokenUse.Unknown;
            Assert.Equal(expected, await Registry.UseRegistrationTokenAsync(commands[i].RegistrationToken!.TokenId, commands[i].NewDeviceId, Now, TimeSpan.Zero));
        }

        // Signed again for the winner's device, a loser registers it.
        var resigned = Register("client-a", token) with { RegistrationToken = SignedFor(winner.DeviceId) };
        var retried = await Registry.RegisterDeviceAsync(resigned);

        Assert.Equal(RegisterDeviceResult.Updated, retried.Result);
        Assert.Equal(RegistrationTokenUse.Current, await Registry.UseRegistrationTokenAsync(resigned.RegistrationToken!.TokenId, winner.DeviceId, Now, TimeSpan.Zero));
        Assert.Equal(1, await Registry.CountDevicesAsync());
        Assert.Equal(1, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
    }

    [Fact]
    public async Task Register_WithATokenSignedForAnotherDevice_AndNoDeviceYet_IsStale_AndWritesNothing()
    {
        var token = await CreateTokenAsync(maxUses: 5);
        var command = Register("client-a", token) with { RegistrationToken = SignedFor("dev-elsewhere") };

        var outcome = await Registry.RegisterDeviceAsync(command);

        Assert.Equal(new RegisterDeviceOutcome(RegisterDeviceResult.Stale, null), outcome);
        Assert.Equal(0, await Registry.CountDevicesAsync());
        Assert.Equal(0, (await Registry.FindProvisioningTokenAsync(token.Id))!.Uses);
        Assert.Equal(RegistrationTokenUse.Unknown, await Registry.UseRegistrationTokenAsync(command.RegistrationToken!.TokenId, "dev-elsewhere", Now, TimeSpan.Zero));
    }

    [Fact]
    public async Task Register_WithATokenSignedBeforeTheDevicesTokensWereRevoked_IsStale_AndSignedAfter_IsRecorded()
    {
        var device = await CreateDeviceAsync("client-a");
        var early = SignedFor(device.DeviceId);
        Clock.Advance(TimeSpan.FromMilliseconds(1500));
        await Registry.RevokeDeviceTokensAsync(device.DeviceId, Now);

        var stale = await Registry.RegisterDeviceAsync(Register("client-a") with { RegistrationToken = early });
        var boundary = stale.Device!.TokensValidAfter!.Value;
        var resigned = SignedFor(device.DeviceId, boundary);
        var registered = await Registry.RegisterDeviceAsync(Register("client-a") with { RegistrationToken = resigned });

        Assert.Equal(RegisterDeviceResult.Stale, stale.Result);
        Assert.Equal(IDeviceStore.TokensValidAfter(Now), boundary);
        Assert.Equal(RegistrationTokenUse.Unknown, await Registry.UseRegistrationTokenAsync(early.TokenId, device.DeviceId, Now, TimeSpan.Zero));
        Assert.Equal(RegisterDeviceResult.Updated, registered.Result);
        Assert.Equal(RegistrationTokenUse.Current, await Registry.UseRegistrationTokenAsync(resigned.TokenId, device.DeviceId, Now, TimeSpan.Zero));
    }

    [Fact]
    public async Task Register_WithASignedToken_RecordsItInTheLedger_WithTheNewDevice()
    {
        var command = Register("client-a");
        command = command with { RegistrationToken = SignedFor(command.NewDeviceId) };

        var outcome = await Registry.RegisterDeviceAsync(command);

        Assert.Equal(RegisterDeviceResult.Created, outcome.Result);
        Assert.Equal(RegistrationTokenUse.Current, await Registry.UseRegistrationTokenAsync(command.RegistrationToken.TokenId, command.NewDeviceId, Now, TimeSpan.Zero));
    }

    [Fact]
    public async Task Devices_AreListedInPagesByCreation_EachOnceEvenWithTies_AndByOrganisation()
    {
        var created = new List<string>();
        for (var n = 0; n < 7; n++)
        {
            // Creation instants out of order and shared: the page order is (creation instant, Device ID).
            var command = Register($"client-{n}", orgId: n == 4 ? "globex" : "acme") with { Now = T0.AddSeconds(n % 3) };
            Assert.Equal(RegisterDeviceResult.Created, (await Registry.RegisterDeviceAsync(command)).Result);
            created.Add(command.NewDeviceId);
        }

        var seen = new List<string>();
        string? after = null;
        for (var pages = 0; pages < 10; pages++)
        {
            var page = await Registry.ListDevicesAsync(null, 3, after);
            Assert.True(page.Count <= 3);
            if (page.Count == 0)
            {
                break;
            }

            seen.AddRange(page.Select(d => d.DeviceId));
            after = page[^1].DeviceId;
        }

        var expected = created.Select((id, n) => (id, n)).OrderBy(x => x.n % 3).ThenBy(x => x.id, StringComparer.Ordinal).Select(x => x.id);
        Assert.Equal(expected, seen);
        Assert.Equal(6, (await Registry.ListDevicesAsync("acme", 100)).Count);
        Assert.Equal([created[4]], (await Registry.ListDevicesAsync("globex", 100)).Select(d => d.DeviceId));
        Assert.Equal(7, await Registry.CountDevicesAsync());
    }

    [Fact]
    public async Task RevokeDevice_DisablesIt_RevokesItsTokens_AndKeepsTheFirstInstant()
    {
        var device = await CreateDeviceAsync("client-a");
        var other = await CreateDeviceAsync("client-b");
        Clock.Advance(TimeSpan.FromSeconds(10));

        var revoked = await Registry.RevokeDeviceAsync(device.DeviceId, Now);
        Clock.Advance(TimeSpan.FromSeconds(10));
        var again = await Registry.RevokeDeviceAsync(device.DeviceId, Now);

        Assert.Equal(DeviceStatuses.Revoked, revoked!.Status);
        Assert.False(revoked.IsActive);
        Assert.Equal(T0.AddSeconds(10), revoked.RevokedAt);
        Assert.Equal(IDeviceStore.TokensValidAfter(T0.AddSeconds(10)), revoked.TokensValidAfter);
        Assert.Equal(T0.AddSeconds(10), again!.RevokedAt);
        Assert.Equal(again, await Registry.FindDeviceAsync(device.DeviceId));
        Assert.True((await Registry.FindDeviceAsync(other.DeviceId))!.IsActive);
        Assert.Null(await Registry.RevokeDeviceAsync("dev-unknown", Now));
        Assert.Equal(2, await Registry.CountDevicesAsync());
    }

    [Fact]
    public async Task RevokeDeviceTokens_MovesTheBoundaryForwardOnly_AndLeavesTheDeviceActive()
    {
        var device = await CreateDeviceAsync("client-a");

        await Registry.RevokeDeviceTokensAsync(device.DeviceId, T0.AddMinutes(10));
        await Registry.RevokeDeviceTokensAsync(device.DeviceId, T0.AddMinutes(5));
        await Registry.RevokeDeviceTokensAsync("dev-unknown", T0);

        var stored = await Registry.FindDeviceAsync(device.DeviceId);
        Assert.True(stored!.IsActive);
        Assert.Equal(IDeviceStore.TokensValidAfter(T0.AddMinutes(10)), stored.TokensValidAfter);
        Assert.Equal(T0.AddMinutes(10).AddSeconds(1), stored.TokensValidAfter);
    }
}
