using Enroll.Device.Requests;
using Enroll.Device.Tokens;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Device.Tests.Fakes;

/// <summary>A <see cref="RegistrationService"/> wired to a fake broker, an in-memory store and a fake clock.</summary>
internal sealed class DeviceUnderTest
{
    public DeviceUnderTest(Action<EnrollDeviceOptions>? configure = null, FakeTimeProvider? time = null, Jitter? jitter = null)
    {
        Time = time ?? new FakeTimeProvider(new DateTimeOffset(2026, 11, 23, 12, 0, 0, TimeSpan.Zero));
        Options = new EnrollDeviceOptions
        {
            ClientId = "unit-1",
            ProvisioningToken = "ept_test.secret",
            ValidateServerTokens = false,
            SendMetadata = false,
            UseJitter = false,
            MaxAttempts = 4,
            AttemptTimeout = TimeSpan.FromSeconds(10),
            InitialBackoff = TimeSpan.FromSeconds(1),
            MaxBackoff = TimeSpan.FromSeconds(60),
        };
        configure?.Invoke(Options);
        var options = Microsoft.Extensions.Options.Options.Create(Options);
        var channel = new RequestChannel(Broker);
        var sender = new ServerRequestSender(channel, options, Time, NullLogger<ServerRequestSender>.Instance, jitter: jitter);
        var verifier = new ServerTokenVerifier(options, Time, NullLogger<ServerTokenVerifier>.Instance);
        Service = new RegistrationService(options, Store, new NoMetadata(), channel, sender, verifier, Time, NullLogger<RegistrationService>.Instance, jitter: jitter);
    }

    public FakeBroker Broker { get; } = new();

    public MemoryCredentialStore Store { get; } = new();

    public FakeTimeProvider Time { get; }

    public EnrollDeviceOptions Options { get; }

    public RegistrationService Service { get; }

    private sealed class NoMetadata : IDeviceInfoProvider
    {
        public ValueTask<IReadOnlyDictionary<string, System.Text.Json.JsonElement>> GetMetadataAsync(CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<IReadOnlyDictionary<string, System.Text.Json.JsonElement>>(new Dictionary<string, System.Text.Json.JsonElement>());
    }
}
