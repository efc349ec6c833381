using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task RegistrationToken_Recorded_IsCurrent_OnlyForItsDevice()
    {
        var device = await CreateDeviceAsync("client-a");
        var other = await CreateDeviceAsync("client-b");
        var token = SignedFor(device.DeviceId);

        await Registry.RecordRegistrationTokenAsync(token);

        Assert.Equal(RegistrationTokenUse.Current, await Registry.UseRegistrationTokenAsync(token.TokenId, device.DeviceId, Now, Grace));
        Assert.Equal(RegistrationTokenUse.Current, await Registry.UseRegistrationTokenAsync(token.TokenId, device.DeviceId, Now, Grace));
        Assert.Equal(RegistrationTokenUse.Unknown, await Registry.UseRegistrationTokenAsync(token.TokenId, other.DeviceId, Now, Grace));
        Assert.Equal(RegistrationTokenUse.Unknown, await Registry.UseRegistrationTokenAsync("jti-unknown", device.DeviceId, Now, Grace));
    }

    [Fact]
    public async Task RegistrationToken_RefreshedAway_IsUsableOnceWithinTheGrace_ThenItsReuseRevokesTheDevicesTokens()
    {
        var device = await CreateDeviceAsync("client-a");
        var old = SignedFor(device.DeviceId);
        await Registry.RecordRegistrationTokenAsync(old);
        var successor = SignedFor(device.DeviceId);

        await Registry.ReplaceRegistrationTokenAsync(old.TokenId, successor, Now);
        Clock.Advance(TimeSpan.FromSeconds(10));
        var graceUse = await Registry.UseRegistrationTokenAsync(old.TokenId, device.DeviceId, Now, Grace);
        var afterGraceUse = (await Registry.FindDeviceAsync(device.DeviceId))!.TokensValidAfter;
        Clock.Advance(TimeSpan.FromSeconds(1));
        var reuse = await Registry.UseRegistrationTokenAsync(old.TokenId, device.DeviceId, Now, Grace);

        Assert.Equal(RegistrationTokenUse.GraceUse, graceUse);
        Assert.Null(afterGraceUse);
        Assert.Equal(RegistrationTokenUse.Reused, reuse);
        var revoked = (await Registry.FindDeviceAsync(device.DeviceId))!;
        Assert.Equal(IDeviceStore.TokensValidAfter(Now), revoked.TokensValidAfter);
        Assert.True(revoked.IsActive);
        Assert.Equal(RegistrationTokenUse.Current, await Registry.UseRegistrationTokenAsync(successor.TokenId, device.DeviceId, Now, Grace));
    }

    [Fact]
    public async Task RegistrationToken_RefreshedAway_UsedAfterTheGrace_IsReused_AndRevokesTheDevicesTokens()
    {
        var device = await CreateDeviceAsync("client-a");
        var old = SignedFor(device.DeviceId);
        await Registry.RecordRegistrationTokenAsync(old);
        await Registry.ReplaceRegistrationTokenAsync(old.TokenId, SignedFor(device.DeviceId), Now);
        Clock.Advance(Grace + TimeSpan.FromSeconds(1));

        var use = await Registry.UseRegistrationTokenAsync(old.TokenId, device.DeviceId, Now, Grace);

        Assert.Equal(RegistrationTokenUse.Reused, use);
        Assert.Equal(IDeviceStore.TokensValidAfter(Now), (await Registry.FindDeviceAsync(device.DeviceId))!.TokensValidAfter);
    }

    [Fact]
    public async Task RegistrationToken_RefreshedAwayTwice_KeepsItsFirstReplacement()
    {
        var device = await CreateDeviceAsync("client-a");
        var old = SignedFor(device.DeviceId);
        await Registry.RecordRegistrationTokenAsync(old);
        await Registry.ReplaceRegistrationTokenAsync(old.TokenId, SignedFor(device.DeviceId), Now);
        Clock.Advance(TimeSpan.FromSeconds(20));
        await Registry.ReplaceRegistrationTokenAsync(old.TokenId, SignedFor(device.DeviceId), Now);
        Clock.Advance(TimeSpan.FromSeconds(20));

        // 40 s after the first replacement (past the grace), 20 s after the second (within it).
        Assert.Equal(RegistrationTokenUse.Reused, await Registry.UseRegistrationTokenAsync(old.TokenId, device.DeviceId, Now, Grace));
    }

    [Fact]
    public async Task RegistrationToken_RecordedAgain_ChangesNothing()
    {
        var device = await CreateDeviceAsync("client-a");
        var old = SignedFor(device.DeviceId);
        await Registry.RecordRegistrationTokenAsync(old);
        await Registry.ReplaceRegistrationTokenAsync(old.TokenId, SignedFor(device.DeviceId), Now);

        await Registry.RecordRegistrationTokenAsync(old);

        Assert.Equal(RegistrationTokenUse.GraceUse, await Registry.UseRegistrationTokenAsync(old.TokenId, device.DeviceId, Now, Grace));
    }
}
