using Enroll.Device;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Enroll.Testing;

/// <summary>The device library wired as an application would wire it, pointed at a test server, with its own state folder.</summary>
public sealed class DeviceHarness : IAsyncDisposable
{
    private readonly ServiceProvider _provider;

    private DeviceHarness(ServiceProvider provider, string statePath)
    {
        _provider = provider;
        StatePath = statePath;
    }

    public string StatePath { get; }

    public IServiceProvider Services => _provider;

    public RegistrationService Registration => _provider.GetRequiredService<RegistrationService>();

    public ICredentialStore Store => _provider.GetRequiredService<ICredentialStore>();

    public DeviceOutbox Outbox => _provider.GetRequiredService<DeviceOutbox>();

    public OutboxPublisher Publisher => _provider.GetRequiredService<OutboxPublisher>();

    public DeviceTwin Twin => _provider.GetRequiredService<DeviceTwin>();

    public DeviceCommands Commands => _provider.GetRequiredService<DeviceCommands>();

    private List<Microsoft.Extensions.Hosting.IHostedService>? _agents;

    /// <summary>Starts the hosted services a Generic Host app would run: the registration agent, the outbox publisher, the twin and commands agent.</summary>
    public async Task StartAgentsAsync()
    {
        _agents = _provider.GetServices<Microsoft.Extensions.Hosting.IHostedService>().ToList();
        foreach (var agent in _agents)
        {
            await agent.StartAsync(CancellationToken.None);
        }
    }

    public async Task StopAgentsAsync()
    {
        foreach (var agent in Enumerable.Reverse(_agents ?? []))
        {
            await agent.StopAsync(CancellationToken.None);
        }

        _agents = null;
    }

    public static DeviceHarness Create(Uri broker, string clientId, string statePath, string? provisioningToken, ITestOutputHelper? output = null, Action<EnrollDeviceOptions>? configure = null, TimeProvider? timeProvider = null, Action<IServiceCollection>? replace = null)
    {
        var services = new ServiceCollection();
        services.AddLogging(logging =>
        {
            if (output is not null)
            {
                logging.AddProvider(new XunitLoggerProvider(output, $"device {clientId}/"));
            }

            logging.SetMinimumLevel(LogLevel.Debug).AddFilter("MQTTnet", LogLevel.Warning);
        });
        if (timeProvider is not null)
        {
            services.AddSingleton(timeProvider);
        }

        services.AddEnrollDevice(o =>
        {
            o.Broker = broker;
            o.ClientId = clientId;
            o.ProvisioningToken = provisioningToken;
            o.StatePath = statePath;
            o.AttemptTimeout = TimeSpan.FromSeconds(5);
            o.InitialBackoff = TimeSpan.FromMilliseconds(100);
            o.MaxBackoff = TimeSpan.FromSeconds(1);
            o.MaxAttempts = 5;
            configure?.Invoke(o);
        });
        replace?.Invoke(services);
        return new DeviceHarness(services.BuildServiceProvider(), statePath);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAgentsAsync();
        var registration = _provider.GetRequiredService<RegistrationService>();
        if (registration.IsRunning)
        {
            await registration.StopAsync();
        }

        await _provider.DisposeAsync();
    }
}
