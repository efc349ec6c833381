using System.Net;
using System.Text.Json.Nodes;
using Enroll.Device;
using Enroll.Testing;
using Microsoft.Playwright;
using MQTTnet;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Enroll.Console.Tests;

/// <summary>
/// The console's Devices pages in Chromium against a real server and real devices: the twin edited in the page reaches
/// the device, a command sent from the page shows the device's result, revoking closes the device's connection; and every
/// page renders (screenshots at laptop and phone widths), with the assets' security headers.
/// </summary>
public sealed class DeviceConsoleTests(ConsoleFixture fixture, ITestOutputHelper output) : IClassFixture<ConsoleFixture>
{
    private static readonly TimeSpan Patience = ConsoleFixture.Patience;

    private TestServer Server => fixture.Server;

    private async Task<(DeviceHarnessLite Device, string DeviceId)> OnlineDeviceAsync(string clientId, Action<DeviceHarnessLite>? handlers = null)
    {
        var token = await Server.CreateTokenAsync("fleet-a");
        var device = fixture.Device(clientId, token.Token, output, new Dictionary<string, string> { ["site"] = "berlin", ["fw"] = "2.4.1" });
        handlers?.Invoke(device);
        var identity = await device.Registration.StartAsync().WaitAsync(Patience);
        await device.StartAgentsAsync();
        await Eventually.ReturnsAsync(() => Task.FromResult(device.Twin.IsSynchronized), s => s, Patience, "the device synchronized its twin");
        return (device, identity.DeviceId);
    }

    [Fact]
    public async Task DesiredTwin_SetInTheConsole_TheDeviceAppliesAndReportsIt()
    {
        var (device, deviceId) = await OnlineDeviceAsync("gw-twin", d => d.Twin.OnDesiredChanged(async (change, ct) =>
        {
            if (change.Desired["interval"] is { } interval)
            {
                await d.Twin.ReportAsync(new JsonObject { ["interval"] = interval.DeepClone() }, ct);
            }
        }));
        await using var _ = device;
        var page = await fixture.SignedInPageAsync();
        await page.GotoAsync($"/#/devices/{deviceId}");
        // The registered device's Registration Token, with its expiry.
        await Expect(page.Locator("#token-list tbody tr")).ToHaveCountAsync(1);

        await page.GetByLabel("Desired patch (JSON merge patch)").FillAsync("""{"interval": 30}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Apply patch" }).ClickAsync();

        await Expect(page.Locator("#twin-desired")).ToContainTextAsync("\"interval\": 30");
        await Expect(page.Locator("#twin-reported")).ToContainTextAsync("\"interval\": 30");
        Assert.Equal(30, device.Twin.Reported["interval"]!.GetValue<int>());
        await ConsoleFixture.ScreenshotAsync(page, "device");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task DevicePage_ShowsTheRegistrationHistory_AndTheOutboxTheDeviceReported()
    {
        var (device, deviceId) = await OnlineDeviceAsync("gw-history");
        await using (device)
        {
            // The device reports its outbox once it is connected (StatusReportInterval's first report).
            await Eventually.ReturnsAsync(
                async () => (await Server.Http.GetAsync($"/api/devices/{deviceId}/status")).StatusCode,
                s => s == HttpStatusCode.OK,
                Patience,
                "the device's status report");
        }

        await Server.RevokeDeviceAsync(deviceId);
        var page = await fixture.SignedInPageAsync();
        await page.GotoAsync($"/#/devices/{deviceId}");

        var history = page.Locator("#history-list");
        await Expect(history).ToBeVisibleAsync();
        await Expect(history.Locator("[data-kind='device.created']")).ToHaveCountAsync(1);
        await Expect(history.Locator("[data-kind='device.registered']").First).ToBeVisibleAsync();
        await Expect(history.Locator("[data-kind='device.revoked']")).ToHaveCountAsync(1);
        await Expect(history.Locator("[data-kind='audit.device.revoke']")).ToHaveCountAsync(1);
        var kinds = await history.Locator("[data-kind]").EvaluateAllAsync<string[]>("els => els.map(e => e.dataset.kind)");
        // Oldest last: its creation and first registration (a Registration Token's time is its iat, whole seconds).
        Assert.Equal(["device.created", "device.registered"], kinds[^2..].Order(StringComparer.Ordinal));
        Assert.Contains(kinds[0], new[] { "device.revoked", "audit.device.revoke" });
        await Expect(page.Locator("#outbox-pending")).ToHaveTextAsync("0 messages (0 bytes)");
        await Expect(page.Locator("#outbox-quarantined")).ToHaveTextAsync("0");
        await Expect(page.Locator("#token-expiries")).ToContainTextAsync("No Registration Token in force");
        await ConsoleFixture.ScreenshotAsync(page, "device-history");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task DesiredTwin_ChangedMeanwhile_IsRefusedWithReloadAdvice()
    {
        var (device, deviceId) = await OnlineDeviceAsync("gw-twin-412");
        await using var _ = device;
        var page = await fixture.SignedInPageAsync();
        await page.GotoAsync($"/#/devices/{deviceId}");
        await Expect(page.Locator("#twin-desired")).ToBeVisibleAsync();

        // Someone else patches the twin after the page read it: the page's PATCH is held until the other one is stored,
        // so it carries the version the page read (If-Match) and must be refused, however fast the live events are.
        var otherPatched = false;
        await page.RouteAsync($"**/api/devices/{deviceId}/twin/desired", async route =>
        {
            if (route.Request.Method == "PATCH" && !otherPatched)
            {
                otherPatched = true;
                using var content = new StringContent("""{"mode":"eco"}""", System.Text.Encoding.UTF8, "application/merge-patch+json");
                using var other = await Server.Http.PatchAsync($"/api/devices/{deviceId}/twin/desired", content);
                other.EnsureSuccessStatusCode();
            }

            await route.ContinueAsync();
        });
        await page.GetByLabel("Desired patch (JSON merge patch)").FillAsync("""{"mode":"turbo"}""");
        await page.GetByRole(AriaRole.Button, new() { Name = "Apply patch" }).ClickAsync();

        await Expect(page.Locator("#twin-error")).ToContainTextAsync("changed meanwhile");
        Assert.True(otherPatched);
        var twin = await Server.Http.GetStringAsync($"/api/devices/{deviceId}/twin");
        Assert.Contains("eco", twin, StringComparison.Ordinal);
        Assert.DoesNotContain("turbo", twin, StringComparison.Ordinal);

        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Command_SentInTheConsole_ShowsTheDevicesResult()
    {
        var (device, deviceId) = await OnlineDeviceAsync("gw-command", d => d.Commands.OnCommand("ping", (request, _) =>
            Task.FromResult(CommandResult.Succeeded(new JsonObject { ["pong"] = request.Payload?["n"]?.DeepClone() }))));
        await using var _ = device;
        var page = await fixture.SignedInPageAsync();
        await page.GotoAsync($"/#/devices/{deviceId}");

        await page.GetByLabel("Name", new() { Exact = true }).FillAsync("ping");
        await page.GetByLabel("Payload (JSON)").FillAsync("""{"n": 7}""");
        await page.GetByLabel("TTL").FillAsync("5m");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send command" }).ClickAsync();

        var row = page.Locator("#command-list tr[data-command]").First;
        await Expect(row.Locator(".command-state")).ToHaveTextAsync("succeeded");
        await Expect(row.Locator(".command-result")).ToHaveTextAsync("""{"pong":7}""");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Command_WhoseSendAnswerArrivesAfterItsResult_StillShowsTheResult()
    {
        var (device, deviceId) = await OnlineDeviceAsync("gw-command-late", d => d.Commands.OnCommand("ping", (_, _) =>
            Task.FromResult(CommandResult.Succeeded(new JsonObject { ["pong"] = "late" }))));
        await using var _ = device;
        var page = await fixture.SignedInPageAsync();
        await page.GotoAsync($"/#/devices/{deviceId}");
        var row = page.Locator("#command-list tr[data-command]").First;

        // The send's answer (state queued) is held until the page has shown the result from the live event: a device
        // that answers in a millisecond makes this order real, and the older answer must not hide the result.
        await page.RouteAsync($"**/devices/{deviceId}/commands", async route =>
        {
            if (route.Request.Method != "POST")
            {
                await route.ContinueAsync();
                return;
            }

            var answer = await route.FetchAsync();
            await Expect(row.Locator(".command-result")).ToHaveTextAsync("""{"pong":"late"}""");
            await route.FulfillAsync(new() { Response = answer });
        });
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync("ping");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send command" }).ClickAsync();

        await Expect(page.Locator("#flash")).ToContainTextAsync("Command ping queued");
        await Expect(row.Locator(".command-state")).ToHaveTextAsync("succeeded");
        await Expect(row.Locator(".command-result")).ToHaveTextAsync("""{"pong":"late"}""");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Revoke_InTheConsole_ClosesTheDevicesConnection()
    {
        var token = await Server.CreateTokenAsync("fleet-a");
        string deviceId, accessToken;
        await using (var device = fixture.Device("gw-revoke", token.Token, output))
        {
            deviceId = (await device.Registration.StartAsync().WaitAsync(Patience)).DeviceId;
            accessToken = (await device.Store.LoadAsync())!.AccessToken!;
        }

        await using var connection = await RawMqttClient.ConnectAsync(Server.MqttEndpoint, "gw-revoke", deviceId, accessToken);
        var closed = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.Client.DisconnectedAsync += e =>
        {
            closed.TrySetResult(e);
            return Task.CompletedTask;
        };
        var page = await fixture.SignedInPageAsync();
        await page.GotoAsync($"/#/devices/{deviceId}");
        await page.GetByRole(AriaRole.Button, new() { Name = "Revoke device…" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Dialog)).ToContainTextAsync("broker connection is closed");
        await page.Locator("#dialog-ok").ClickAsync();

        var reason = await closed.Task.WaitAsync(Patience);
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, reason.Reason);
        await Expect(page.Locator("#device-status")).ToHaveTextAsync("revoked");
        await Expect(page.Locator("#flash")).ToContainTextAsync("connection: disconnected");
        Assert.Equal("revoked", (await Server.GetDeviceAsync(deviceId)).Status);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task EveryPage_Renders_AtLaptopAndPhoneWidths()
    {
        var (device, deviceId) = await OnlineDeviceAsync("gw-pages");
        await using var _ = device;
        var page = await fixture.SignedInPageAsync();
        foreach (var (link, heading, shot) in new[] { ("Devices", "Devices", "devices"), ("Overview", "Fleet overview", "overview-pages"), ("Audit log", "Audit log", "audit"), ("Operators", "Operators", "operators") })
        {
            await page.GetByRole(AriaRole.Link, new() { Name = link, Exact = true }).ClickAsync();
            await Expect(page.GetByRole(AriaRole.Heading, new() { Name = heading, Exact = true })).ToBeVisibleAsync();
            if (shot == "devices")
            {
                await Expect(page.Locator($"tr[data-device='{deviceId}']")).ToBeVisibleAsync();
                await page.GetByLabel("Search").FillAsync("no-such-device");
                await Expect(page.Locator($"tr[data-device='{deviceId}']")).ToHaveCountAsync(0);
                await page.GetByLabel("Search").FillAsync(string.Empty);
                await page.GetByLabel("Metadata (key=value, ...)").FillAsync("site=berlin");
                await Expect(page.Locator($"tr[data-device='{deviceId}']")).ToBeVisibleAsync();
            }

            await ConsoleFixture.ScreenshotAsync(page, shot);
        }

        await page.Context.CloseAsync();

        var phone = await fixture.SignedInPageAsync(width: 390, height: 844);
        await phone.GotoAsync($"/#/devices/{deviceId}");
        await Expect(phone.Locator("#twin-desired")).ToBeVisibleAsync();
        await ConsoleFixture.ScreenshotAsync(phone, "device-phone");
        var bodyWidth = await phone.EvaluateAsync<int>("() => document.documentElement.scrollWidth");
        Assert.True(bodyWidth <= 400, $"the device page is {bodyWidth} px wide on a 390 px phone (it scrolls sideways)");
        await phone.Context.CloseAsync();
    }

    [Fact]
    public async Task Assets_AreServedWithSecurityHeadersAndETags_WithoutShadowingTheServersRoutes()
    {
        using var http = new HttpClient { BaseAddress = Server.HttpEndpoint };
        using var index = await http.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, index.StatusCode);
        Assert.Equal("text/html", index.Content.Headers.ContentType!.MediaType);
        Assert.Contains("default-src 'self'", index.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        Assert.Contains("frame-ancestors 'none'", index.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        Assert.Equal("nosniff", index.Headers.GetValues("X-Content-Type-Options").Single());
        var etag = index.Headers.ETag!;

        using var again = new HttpRequestMessage(HttpMethod.Get, "/");
        again.Headers.IfNoneMatch.Add(etag);
        using var notModified = await http.SendAsync(again);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);

        using var script = await http.GetAsync("/js/app.js");
        Assert.Equal("text/javascript", script.Content.Headers.ContentType!.MediaType);
        using var style = await http.GetAsync("/console.css");
        Assert.Equal("text/css", style.Content.Headers.ContentType!.MediaType);

        // The server's own routes keep answering as before; unknown paths stay 404, unknown API paths stay API answers.
        Assert.Equal("ok\n", await http.GetStringAsync("/healthz"));
        Assert.Contains("\"keys\"", await http.GetStringAsync("/.well-known/jwks.json"), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/no-such-page")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Server.Http.GetAsync("/api/no-such-endpoint")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/devices")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.PostAsync("/index.html", null)).StatusCode);
    }
}
