using Enroll.Protocol.Messages;
using Enroll.Protocol.Transfers;
using Enroll.Server.Diagnostics;
using Enroll.Server.Files;
using Enroll.Server.Handlers;
using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Tests.Files;

/// <summary>The transfer expiry sweep against a real SQLite registry and a real staging folder, on a fake clock.</summary>
public sealed class TransferExpirySweeperTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly TempDirectory _folder = new("enroll-transfer-sweep");
    private readonly TimerCountingClock _clock = new(T0);
    private readonly EnrollServerOptions _options = new() { IncompleteTransferExpiry = TimeSpan.FromHours(24) };
    private SqliteRegistry _registry = null!;
    private FolderBlobStore _blobs = null!;
    private ServerMetrics _metrics = null!;
    private TestMeterFactory _meters = null!;

    public async Task InitializeAsync()
    {
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
        _blobs = new FolderBlobStore(_folder.Combine("files"));
        _meters = new TestMeterFactory();
        _metrics = new ServerMetrics(_meters);
        await _registry.RegisterDeviceAsync(new RegisterDeviceCommand { OrgId = "acme", ClientId = "sweep-1", NewDeviceId = "dev-1", Now = T0 });
    }

    public async Task DisposeAsync()
    {
        await _registry.DisposeAsync();
        _meters.Dispose();
        _folder.Dispose();
    }

    private TransferExpirySweeper Sweeper() =>
        new(_registry, _blobs, _metrics, Options.Create(_options), _clock, NullLogger<TransferExpirySweeper>.Instance);

    /// <summary>A file transfer started now with its first chunk staged and recorded.</summary>
    private async Task<TransferRecord> StartedAsync(string transferId)
    {
        var now = _clock.GetUtcNow();
        var transfer = (await _registry.BeginTransferAsync(
            new TransferRecord
            {
                DeviceId = "dev-1",
                TransferId = transferId,
                Kind = TransferKinds.File,
                Name = "log.txt",
                Size = 2048,
                ChunkSize = 1024,
                ChunkCount = 2,
                Sha256 = new string('0', 64),
                StartedAt = now,
                UpdatedAt = now,
            },
            long.MaxValue)).Transfer!;
        await _blobs.WriteChunkAsync(TransferIngest.BlobKey(transfer), 0, new byte[1024]);
        await _registry.RecordChunkAsync("dev-1", transferId, 0, now);
        return transfer;
    }

    private async Task<string?> StatusAsync(string transferId)
    {
        var handler = new TransferStatusHandler(_registry, _registry);
        var answer = await handler.HandleAsync(new TransferStatusRequest { TransferId = transferId }, new RequestContext("sweep-1", "dev-1", _clock.GetUtcNow()) { TopicDeviceId = "dev-1" }, CancellationToken.None);
        return answer.State;
    }

    [Fact]
    public async Task IdleTransfer_AfterTheExpiry_RemovedWithItsStagedBytes_AndItsStatusIsUnknown()
    {
        var idle = await StartedAsync("tr-idle");
        _clock.Advance(TimeSpan.FromHours(20));
        var busy = await StartedAsync("tr-busy");
        Assert.Equal(TransferStates.Receiving, await StatusAsync("tr-idle"));
        using var sweeper = Sweeper();
        await sweeper.StartAsync(CancellationToken.None);
        await Eventually.ReturnsAsync(() => Task.FromResult(_clock.Timers), t => t >= 1, Patience, "the sweeper waiting");

        _clock.Advance(TimeSpan.FromHours(5));

        // The timer seen above may not be the sweeper's own wait yet (it starts after the orphan sweep): while the transfer
        // is still there, move on by one interval, so the sweeper's wait elapses whenever it began.
        await Eventually.ReturnsAsync(
            async () =>
            {
                var transfer = await _registry.GetTransferAsync("dev-1", "tr-idle");
                if (transfer is not null)
                {
                    _clock.Advance(TransferExpirySweeper.Interval);
                }

                return transfer;
            },
            t => t is null,
            Patience,
            "the idle transfer removed");
        Assert.Null(_blobs.OpenStaged(TransferIngest.BlobKey(idle)));
        Assert.False(File.Exists(_folder.Combine("files", "staging", "dev-1", $"tr-idle-{T0.ToUnixTimeMilliseconds()}.part")));
        Assert.Equal(TransferStates.Unknown, await StatusAsync("tr-idle"));
        Assert.Equal(TransferStates.Receiving, await StatusAsync("tr-busy"));
        using var staged = _blobs.OpenStaged(TransferIngest.BlobKey(busy));
        Assert.NotNull(staged);
        await sweeper.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task FinishedTransfer_ForgottenAfterTheRetention()
    {
        await StartedAsync("tr-done");
        await _registry.RefuseTransferAsync("dev-1", "tr-done", "sha256 mismatch", _clock.GetUtcNow());
        var sweeper = Sweeper();

        _clock.Advance(TransferLimits.FinishedRetention - TimeSpan.FromMinutes(1));
        await sweeper.SweepAsync(CancellationToken.None);
        var kept = await StatusAsync("tr-done");
        _clock.Advance(TimeSpan.FromMinutes(2));
        await sweeper.SweepAsync(CancellationToken.None);

        Assert.Equal(TransferStates.Refused, kept);
        Assert.Equal(TransferStates.Unknown, await StatusAsync("tr-done"));
    }

    [Fact]
    public async Task AtStart_StagedFilesOfNoTransferUnderWay_Removed()
    {
        var live = await StartedAsync("tr-live");
        var finished = await StartedAsync("tr-finished");
        await _registry.RefuseTransferAsync("dev-1", "tr-finished", "no", _clock.GetUtcNow());
        await _blobs.WriteChunkAsync("dev-1/tr-unknown-123", 0, new byte[10]);
        await _blobs.WriteChunkAsync("dev-9/not-a-transfer-key", 0, new byte[10]);
        await _blobs.WriteChunkAsync($"dev-1/tr-live-{T0.ToUnixTimeMilliseconds() - 1}", 0, new byte[10]);

        var removed = await Sweeper().RemoveOrphansAsync(CancellationToken.None);

        Assert.Equal(4, removed);
        Assert.Equal([TransferIngest.BlobKey(live)], _blobs.ListStaged());
        Assert.Equal(TransferStates.Refused, (await _registry.GetTransferAsync("dev-1", finished.TransferId))!.State);
    }

    private sealed class TestMeterFactory : System.Diagnostics.Metrics.IMeterFactory
    {
        private readonly List<System.Diagnostics.Metrics.Meter> _meters = [];

        public System.Diagnostics.Metrics.Meter Create(System.Diagnostics.Metrics.MeterOptions options)
        {
            var meter = new System.Diagnostics.Metrics.Meter(options);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose() => _meters.ForEach(m => m.Dispose());
    }
}
