using Enroll.Device;
using Enroll.Protocol;
using Enroll.Testing;
using Microsoft.Playwright;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Enroll.Console.Tests;

/// <summary>
/// The console's sign-in, Approvals and Tokens pages in Chromium against a real server and real devices: pending
/// registrations appear live, and the decisions made by clicking reach the devices.
/// </summary>
public sealed class ApprovalConsoleTests(ConsoleFixture fixture, ITestOutputHelper output) : IClassFixture<ConsoleFixture>
{
    private static readonly TimeSpan Patience = ConsoleFixture.Patience;

    private TestServer Server => fixture.Server;

    [Fact]
    public async Task SignIn_WrongKeyIsRefused_TheAdminKeySignsIn_AndSignOutShowsTheFormAgain()
    {
        var page = await fixture.NewPageAsync();
        await ConsoleFixture.ScreenshotAsync(page, "signin");

        await page.GetByLabel("Key").FillAsync("not-the-key");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.Locator("#signin-error")).ToContainTextAsync("Wrong key");
        await Expect(page.Locator("#top")).ToBeHiddenAsync();

        await page.GetByLabel("Key").FillAsync(Server.AdminKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.Locator("#operator-name")).ToHaveTextAsync("admin");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Approvals", Exact = true })).ToBeVisibleAsync();

        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await Expect(page.GetByLabel("Key")).ToBeVisibleAsync();
        await Expect(page.Locator("#top")).ToBeHiddenAsync();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task PendingDevice_AppearsWithoutAReload_AndApproveFinishesItsRegistration()
    {
        var page = await fixture.SignedInPageAsync();
        var token = await Server.CreateTokenAsync("plant-7", autoApprove: false);
        await using var device = fixture.Device("gw-approve", token.Token, output, new Dictionary<string, string> { ["site"] = "berlin", ["model"] = "rx-200" }, desiredId: "press-17");
        await using var other = fixture.Device("gw-approve-2", token.Token, output, new Dictionary<string, string> { ["site"] = "hamburg" });

        var start = device.Registration.StartAsync();
        var otherStart = other.Registration.StartAsync();
        var row = page.Locator("tr[data-client='gw-approve']");
        await Expect(row).ToBeVisibleAsync();
        await Expect(row).ToContainTextAsync("press-17");
        await Expect(row).ToContainTextAsync("plant-7");
        await Expect(row).ToContainTextAsync("site=berlin");
        await Expect(row).ToContainTextAsync(token.Id);
        await Expect(page.Locator("tr[data-client='gw-approve-2']")).ToBeVisibleAsync();
        await ConsoleFixture.ScreenshotAsync(page, "approvals");

        await row.GetByRole(AriaRole.Button, new() { Name = "Approve gw-approve", Exact = true }).ClickAsync();

        var identity = await start.WaitAsync(Patience);
        Assert.Equal("press-17", identity.DeviceId);
        await Expect(row).ToHaveCountAsync(0);
        Assert.Equal("active", (await Server.GetDeviceAsync("press-17")).Status);
        await other.Registration.StopAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => otherStart);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Reject_WithAReason_TheDeviceGetsThePermanentError()
    {
        var page = await fixture.SignedInPageAsync();
        var token = await Server.CreateTokenAsync("plant-7", autoApprove: false);
        await using var device = fixture.Device("gw-reject", token.Token, output);

        var start = device.Registration.StartAsync();
        var row = page.Locator("tr[data-client='gw-reject']");
        await row.GetByRole(AriaRole.Button, new() { Name = "Reject gw-reject", Exact = true }).ClickAsync();
        await page.GetByLabel("Reason (the device is told)").FillAsync("unknown hardware revision");
        await page.Locator("#dialog-ok").ClickAsync();

        var error = await Assert.ThrowsAsync<EnrollServerException>(() => start.WaitAsync(Patience));
        Assert.Equal(ErrorCodes.Rejected, error.Code);
        Assert.Contains("unknown hardware revision", error.Message, StringComparison.Ordinal);
        Assert.Equal(DeviceState.Failed, device.Registration.Status.State);
        await Expect(row).ToHaveCountAsync(0);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task BulkApprove_ByMetadataFilter_ApprovesTheThreeThatMatch_AfterSayingHowMany()
    {
        var page = await fixture.SignedInPageAsync();
        var token = await Server.CreateTokenAsync("bulk-org", autoApprove: false);
        var matching = new List<DeviceHarnessLite>();
        var starts = new List<Task<DeviceIdentity>>();
        try
        {
            for (var i = 1; i <= 3; i++)
            {
                var device = fixture.Device($"gw-bulk-{i}", token.Token, output, new Dictionary<string, string> { ["line"] = "bulk-a" });
                matching.Add(device);
                starts.Add(device.Registration.StartAsync());
            }

            await using var outsider = fixture.Device("gw-bulk-out", token.Token, output, new Dictionary<string, string> { ["line"] = "bulk-b" });
            var outsiderStart = outsider.Registration.StartAsync();
            foreach (var id in new[] { "gw-bulk-1", "gw-bulk-2", "gw-bulk-3", "gw-bulk-out" })
            {
                await Expect(page.Locator($"tr[data-client='{id}']")).ToBeVisibleAsync();
            }

            await page.GetByLabel("Organisation").FillAsync("bulk-org");
            await page.GetByLabel("Metadata (key=value, ...)").FillAsync("line=bulk-a");
            await page.GetByRole(AriaRole.Button, new() { Name = "Approve matching…" }).ClickAsync();
            await Expect(page.Locator("#bulk-count")).ToHaveTextAsync("This will approve 3 pending operations.");
            await ConsoleFixture.ScreenshotAsync(page, "approvals-bulk-confirm");
            await page.GetByRole(AriaRole.Button, new() { Name = "Approve 3" }).ClickAsync();

            var identities = await Task.WhenAll(starts).WaitAsync(Patience);
            Assert.Equal(3, identities.Select(i => i.DeviceId).Distinct().Count());
            await Expect(page.Locator("tr[data-client='gw-bulk-out']")).ToBeVisibleAsync();
            Assert.Equal(DeviceState.Pending, outsider.Registration.Status.State);
            await outsider.Registration.StopAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => outsiderStart);
        }
        finally
        {
            foreach (var device in matching)
            {
                await device.DisposeAsync();
            }
        }

        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task CreateToken_InTheConsole_ShowsItsSecretOnce_AndADeviceRegistersWithIt()
    {
        var page = await fixture.SignedInPageAsync();
        await page.GetByRole(AriaRole.Link, new() { Name = "Tokens" }).ClickAsync();
        await page.GetByLabel("Organisation").FillAsync("console-org");
        await page.GetByLabel("Max uses (optional)").FillAsync("5");
        await page.GetByLabel("Description (optional)").FillAsync("line 3 gateways");
        await page.GetByLabel("Approve registrations automatically").CheckAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Create token" }).ClickAsync();

        var secret = (await page.Locator("#token-secret-value").TextContentAsync())!.Trim();
        Assert.False(string.IsNullOrEmpty(secret));
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Copy" })).ToBeFocusedAsync();

        await using var device = fixture.Device("gw-console-token", secret, output);
        var identity = await device.Registration.StartAsync().WaitAsync(Patience);
        Assert.Equal("console-org", (await Server.GetDeviceAsync(identity.DeviceId)).OrgId);

        // The list counts the use once shown again; the secret is not shown again.
        await page.GetByRole(AriaRole.Link, new() { Name = "Devices" }).ClickAsync();
        await page.GetByRole(AriaRole.Link, new() { Name = "Tokens" }).ClickAsync();
        var row = page.Locator("tr", new() { HasText = "line 3 gateways" });
        await Expect(row).ToContainTextAsync("1 of 5");
        await Expect(page.Locator("#token-secret-value")).ToHaveCountAsync(0);
        await Expect(page.GetByText(secret)).ToHaveCountAsync(0);
        await ConsoleFixture.ScreenshotAsync(page, "tokens");
        await page.Context.CloseAsync();
    }
}
