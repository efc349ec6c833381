using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Json;
using Enroll.Protocol.Topics;
using Enroll.Server.Registry;
using Enroll.Server.Twins;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Server.Tests.Twins;

/// <summary><see cref="TwinService"/> on a real SQLite registry, with a broker that takes or refuses the pushes.</summary>
public sealed class TwinServiceTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly TempDirectory _folder = new("enroll-twin-service");
    private readonly ServiceProvider _metrics = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly MeterListener _listener = new();
    private long _pushFailures;
    private SqliteRegistry _registry = null!;

    public async Task InitializeAsync()
    {
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
        foreach (var n in new[] { 1, 2 })
        {
            await _registry.RegisterDeviceAsync(new RegisterDeviceCommand { OrgId = "acme", ClientId = $"svc-{n}", NewDeviceId = $"dev-svc-{n}", Now = T0 });
        }

        var factory = _metrics.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Scope == factory && instrument.Name == TwinService.PushFailures)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _pushFailures, value));
        _listener.Start();
    }

    public async Task DisposeAsync()
    {
        _listener.Dispose();
        await _metrics.DisposeAsync();
        await _registry.DisposeAsync();
        _folder.Dispose();
    }

    private TwinService Service(IResponsePublisher publisher) =>
        new(_registry, _registry, publisher, new FakeTimeProvider(T0), NullLogger<TwinService>.Instance, _metrics.GetRequiredService<IMeterFactory>(),
            new Enroll.Server.Http.ConsoleApi.ConsoleFeed(new InProcessRegistryChanges(NullLogger<InProcessRegistryChanges>.Instance), NullLogger<Enroll.Server.Http.ConsoleApi.ConsoleFeed>.Instance));

    [Fact]
    public async Task AppliedPatch_IsPushedAfterItsCommit_ToTheDevicesDesiredTopic_NotRetained()
    {
        var broker = new RecordingPublisher(_registry);

        var outcome = await Service(broker).PatchDesiredAsync("dev-svc-1", new JsonObject { ["mode"] = "eco" }, null);

        Assert.Equal(DesiredPatchResult.Applied, outcome.Result);
        var (topic, payload, retain, committedVersion) = Assert.Single(broker.Published);
        Assert.Equal(EnrollTopics.DeviceTwinDesired("dev-svc-1"), topic);
        Assert.False(retain);
        Assert.Equal(1, committedVersion);
        var pushed = JsonSerializer.Deserialize(payload, EnrollJsonContext.Default.TwinDesiredPatch)!;
        Assert.Equal(1, pushed.Version);
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["mode"] = "eco" }, pushed.Patch));
    }

    [Fact]
    public async Task PushThatTheBrokerRefuses_IsCounted_AndThePatchStaysApplied()
    {
        var service = Service(new FailingPublisher());

        var one = await service.PatchDesiredAsync("dev-svc-1", new JsonObject { ["a"] = 1 }, null);
        var fleet = await service.PatchDesiredWhereAsync(new TwinFilter("acme", []), new JsonObject { ["b"] = 2 });

        Assert.Equal(DesiredPatchResult.Applied, one.Result);
        Assert.Equal(2, fleet.Touched.Count);
        Assert.Equal(3, Interlocked.Read(ref _pushFailures));
        Assert.Equal(2, (await _registry.GetTwinAsync("dev-svc-1"))!.DesiredVersion);
        Assert.Equal(1, (await _registry.GetTwinAsync("dev-svc-2"))!.DesiredVersion);
    }

    [Fact]
    public async Task RefusedOrStalePatch_IsNotPushed()
    {
        var broker = new RecordingPublisher(_registry);
        var service = Service(broker);

        var stale = await service.PatchDesiredAsync("dev-svc-1", new JsonObject { ["a"] = 1 }, ifVersion: 4);
        var refused = await service.PatchDesiredAsync("dev-svc-1", new JsonObject { ["a.b"] = 1 }, null);
        var unknown = await service.PatchDesiredAsync("dev-nobody", new JsonObject { ["a"] = 1 }, null);

        Assert.Equal([DesiredPatchResult.VersionMismatch, DesiredPatchResult.Refused, DesiredPatchResult.NoDevice], new[] { stale.Result, refused.Result, unknown.Result });
        Assert.Empty(broker.Published);
    }

    [Fact]
    public async Task PatchToARevokedDevice_IsApplied_ButNotPushed()
    {
        var broker = new RecordingPublisher(_registry);
        await _registry.RevokeDeviceAsync("dev-svc-2", T0);

        var outcome = await Service(broker).PatchDesiredAsync("dev-svc-2", new JsonObject { ["a"] = 1 }, null);

        Assert.Equal(DesiredPatchResult.Applied, outcome.Result);
        Assert.Empty(broker.Published);
        Assert.Equal(1, (await _registry.GetTwinAsync("dev-svc-2"))!.DesiredVersion);
    }

    /// <summary>Records each push with the desired version the registry held when it was published (so a push before the commit shows).</summary>
    private sealed class RecordingPublisher(SqliteRegistry registry) : IResponsePublisher
    {
        public ConcurrentQueue<(string Topic, byte[] Payload, bool Retain, long CommittedVersion)> Published { get; } = new();

        public async Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json")
        {
            var deviceId = topic.Split('/')[3];
            var twin = await registry.GetTwinAsync(deviceId, cancellationToken);
            Published.Enqueue((topic, payload, retain, twin!.DesiredVersion));
        }
    }

    private sealed class FailingPublisher : IResponsePublisher
    {
        public Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken, string contentType = "application/json") =>
            throw new InvalidOperationException("the broker connection is down");
    }
}
