using System.Net.Http.Json;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Topics;
using Enroll.Testing;
using Microsoft.Playwright;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Enroll.Console.Tests;

/// <summary>The console's fleet overview in Chromium against a real server: a real device's registration and a real refused token show.</summary>
public sealed class OverviewConsoleTests(ConsoleFixture fixture, ITestOutputHelper output) : IClassFixture<ConsoleFixture>
{
    private static readonly TimeSpan Patience = ConsoleFixture.Patience;

    private TestServer Server => fixture.Server;

    [Fact]
    public async Task Overview_ShowsTheDeviceCount_TheRegistration_AndARefusedToken()
    {
        var token = await Server.CreateTokenAsync("fleet-o");
        await using var device = fixture.Device("gw-overview", token.Token, output);
        await device.Registration.StartAsync().WaitAsync(Patience);

        // A client guessing a provisioning token is refused; the refusal log gets it (asynchronously, so wait for it).
        await using (var intruder = await RawMqttClient.ConnectAsync(Server.MqttEndpoint, "intruder-7"))
        {
            await intruder.SubscribeAsync(EnrollTopics.ClientResponses("intruder-7"));
            await intruder.PublishAsync(EnrollTopics.Register, """{"client_id":"intruder-7","provisioning_token":"ept_guess.wrong"}""", EnrollTopics.ClientResponses("intruder-7"));
            await intruder.ReceiveAsync();
        }

        await Eventually.ReturnsAsync(
            () => Server.Http.GetFromJsonAsync("/api/refusals", ConsoleJsonContext.Default.ItemListRefusalInfo)!,
            l => l!.Items.Any(r => r.Source == "intruder-7"),
            Patience,
            "the refused token in the refusal log");

        var page = await fixture.SignedInPageAsync();
        await page.GetByRole(AriaRole.Link, new() { Name = "Overview", Exact = true }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Fleet overview", Exact = true })).ToBeVisibleAsync();
        await Expect(page.Locator("#overview-devices .stat")).ToHaveTextAsync("1");
        await Expect(page.Locator("[data-status='active'] .stat")).ToHaveTextAsync("1");
        var refusal = page.Locator("tr[data-kind='token_refused']", new() { HasText = "intruder-7" });
        await Expect(refusal).ToContainTextAsync("provisioning token: unknown");

        // Each chart has its text equivalent: the SVG's label, and a table of the minutes with any.
        await Expect(page.Locator("svg[role='img']")).ToHaveCountAsync(3);
        await Expect(page.Locator("[data-chart='registrations'] svg")).ToHaveAttributeAsync("aria-label", "Registrations: 1 in the last hour, at most 1 in one minute");
        await page.GetByText("Registrations by minute (table)").ClickAsync();
        await Expect(page.Locator("[data-chart='registrations'] table tbody tr")).ToHaveCountAsync(1);
        await ConsoleFixture.ScreenshotAsync(page, "overview");
        await page.Context.CloseAsync();

        var phone = await fixture.SignedInPageAsync(width: 390, height: 844);
        await phone.GotoAsync("/#/overview");
        await Expect(phone.Locator("tr[data-kind='token_refused']")).ToBeVisibleAsync();
        var width = await phone.EvaluateAsync<int>("() => document.documentElement.scrollWidth");
        Assert.True(width <= 400, $"the overview is {width} px wide on a 390 px phone (it scrolls sideways)");
        await ConsoleFixture.ScreenshotAsync(phone, "overview-phone");
        await phone.Context.CloseAsync();
    }
}
