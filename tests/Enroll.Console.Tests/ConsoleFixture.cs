using System.Text.Json;
using Enroll.Device;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace Enroll.Console.Tests;

/// <summary>
/// One real server (embedded broker, SQLite, in-process on free ports) and one headless Debian Chromium for a test class;
/// each test gets its own browser context (its own cookies) through <see cref="SignedInPageAsync"/>.
/// </summary>
public sealed class ConsoleFixture : IAsyncLifetime
{
    /// <summary>Debian's Chromium; scripts/test.sh installs it when missing. Playwright never downloads a browser here.</summary>
    public const string ChromiumPath = "/usr/bin/chromium";

    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private readonly TempDirectory _states = new("enroll-console-devices");
    private IPlaywright? _playwright;
    private int _devices;

    public TestServer Server { get; private set; } = null!;

    public IBrowser Browser { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        // Pending devices are told by push; the poll stays as the fallback it is.
        Server = await TestServer.StartAsync(configure: o => o.PendingPollInterval = TimeSpan.FromSeconds(2));
        Assertions.SetDefaultExpectTimeout((float)Patience.TotalMilliseconds);
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.CloseAsync();
        }

        _playwright?.Dispose();
        await Server.DisposeAsync();
        _states.Dispose();
    }

    /// <summary>A new browser context (no cookies) with a page on the console, not signed in.</summary>
    public async Task<IPage> NewPageAsync(int width = 1366, int height = 900)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = width, Height = height }, BaseURL = Server.HttpEndpoint.ToString() });
        context.SetDefaultTimeout((float)Patience.TotalMilliseconds);
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.PageError += (_, e) => errors.Add(e);
        page.Console += (_, m) =>
        {
            if (m.Type == "error")
            {
                errors.Add(m.Text);
            }
        };
        await page.GotoAsync("/");
        return page;
    }

    /// <summary>Signs in through the form with <paramref name="key"/> (the admin key by default).</summary>
    public async Task<IPage> SignedInPageAsync(string? key = null, int width = 1366, int height = 900)
    {
        var page = await NewPageAsync(width, height);
        await page.GetByLabel("Key").FillAsync(key ?? Server.AdminKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(page.Locator("#operator-name")).ToHaveTextAsync("admin");
        return page;
    }

    /// <summary>A device (the real device library) with its own state folder, sending <paramref name="metadata"/> as its facts.</summary>
    public DeviceHarnessLite Device(string clientId, string? provisioningToken, ITestOutputHelper output, IReadOnlyDictionary<string, string>? metadata = null, string? desiredId = null)
    {
        var state = _states.Combine($"{clientId}-{Interlocked.Increment(ref _devices)}");
        return new DeviceHarnessLite(Server.MqttEndpoint, clientId, state, provisioningToken, output, metadata, desiredId);
    }

    /// <summary>Where screenshots go: artifacts/screenshots at the repository root (found by walking up to Enroll.slnx).</summary>
    public static string ScreenshotPath(string page)
    {
        var folder = new DirectoryInfo(AppContext.BaseDirectory);
        while (folder is not null && !File.Exists(Path.Combine(folder.FullName, "Enroll.slnx")))
        {
            folder = folder.Parent;
        }

        var root = folder?.FullName ?? throw new InvalidOperationException("Enroll.slnx not found above " + AppContext.BaseDirectory);
        var screenshots = Path.Combine(root, "artifacts", "screenshots");
        Directory.CreateDirectory(screenshots);
        return Path.Combine(screenshots, page + ".png");
    }

    public static Task ScreenshotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new PageScreenshotOptions { Path = ScreenshotPath(name), FullPage = true });
}

/// <summary>The device library as an application wires it (like <see cref="DeviceHarness"/>), with chosen metadata.</summary>
public sealed class DeviceHarnessLite : IAsyncDisposable
{
    private readonly ServiceProvider _provider;
    private List<Microsoft.Extensions.Hosting.IHostedService>? _agents;

    public DeviceHarnessLite(Uri broker, string clientId, string statePath, string? provisioningToken, ITestOutputHelper output, IReadOnlyDictionary<string, string>? metadata, string? desiredId)
    {
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(new XunitLoggerProvider(output, $"device {clientId}/")).SetMinimumLevel(LogLevel.Debug).AddFilter("MQTTnet", LogLevel.Warning));
        services.AddSingleton<IDeviceInfoProvider>(new FixedFacts(metadata ?? new Dictionary<string, string>()));
        services.AddEnrollDevice(o =>
        {
            o.Broker = broker;
            o.ClientId = clientId;
            o.ProvisioningToken = provisioningToken;
            o.StatePath = statePath;
            o.DesiredDeviceId = desiredId;
            o.DeviceName = "console test " + clientId;
            o.AttemptTimeout = TimeSpan.FromSeconds(5);
            o.InitialBackoff = TimeSpan.FromMilliseconds(100);
            o.MaxBackoff = TimeSpan.FromSeconds(1);
            o.MaxAttempts = 20;
        });
        _provider = services.BuildServiceProvider();
    }

    public RegistrationService Registration => _provider.GetRequiredService<RegistrationService>();

    public ICredentialStore Store => _provider.GetRequiredService<ICredentialStore>();

    public DeviceTwin Twin => _provider.GetRequiredService<DeviceTwin>();

    public DeviceCommands Commands => _provider.GetRequiredService<DeviceCommands>();

    public async Task StartAgentsAsync()
    {
        _agents = [.. _provider.GetServices<Microsoft.Extensions.Hosting.IHostedService>()];
        foreach (var agent in _agents)
        {
            await agent.StartAsync(CancellationToken.None);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var agent in Enumerable.Reverse(_agents ?? []))
        {
            await agent.StopAsync(CancellationToken.None);
        }

        if (Registration.IsRunning)
        {
            await Registration.StopAsync();
        }

        await _provider.DisposeAsync();
    }

    private sealed class FixedFacts(IReadOnlyDictionary<string, string> facts) : IDeviceInfoProvider
    {
        private static JsonElement Text(string value)
        {
            using var document = JsonDocument.Parse("\"" + JsonEncodedText.Encode(value) + "\"");
            return document.RootElement.Clone();
        }

        public ValueTask<IReadOnlyDictionary<string, JsonElement>> GetMetadataAsync(CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<IReadOnlyDictionary<string, JsonElement>>(facts.ToDictionary(f => f.Key, f => Text(f.Value)));
    }
}
