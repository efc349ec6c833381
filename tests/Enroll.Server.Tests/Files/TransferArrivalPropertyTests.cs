using System.Buffers;
using Enroll.Protocol;
using Enroll.Protocol.Transfers;
using Enroll.Server.Diagnostics;
using Enroll.Server.Files;
using Enroll.Server.Ingest;
using Enroll.Server.Registry;
using Enroll.Testing;
using FsCheck.Xunit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Tests.Files;

/// <summary>
/// Whatever order the chunks of a file arrive in, however often each is resent, and however many arrive at once, the
/// server stores the bytes sent, once: every chunk is counted stored exactly once and every other arrival a duplicate.
/// Real SQLite registry, real folder, <see cref="TransferIngest"/> without a broker.
/// </summary>
public sealed class TransferArrivalPropertyTests : IAsyncLifetime
{
    private const int ChunkSize = TransferLimits.MinChunkBytes;
    private readonly TempDirectory _folder = new("enroll-transfer-property");
    private ServiceProvider _metrics = null!;
    private SqliteRegistry _registry = null!;
    private FolderBlobStore _blobs = null!;
    private TransferIngest _ingest = null!;
    private int _transfers;

    public Task InitializeAsync()
    {
        _metrics = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new ServerMetrics(_metrics.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        _registry = new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName));
        _blobs = new FolderBlobStore(_folder.Combine("files"));
        var messages = new MessageIngest(_registry, [], metrics, NullLogger<MessageIngest>.Instance);
        _ingest = new TransferIngest(_registry, _blobs, messages, new TimeOrderedId(TimeProvider.System), TimeProvider.System, metrics, Options.Create(new EnrollServerOptions()), NullLogger<TransferIngest>.Instance);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _registry.DisposeAsync();
        await _metrics.DisposeAsync();
        _folder.Dispose();
    }

    [Property(MaxTest = 40)]
    public bool AnyArrivalOrderWithResends_StoresTheBytesOnce(byte chunks, byte lastLength, int[] resends, int[] orderKeys, byte inFlight)
    {
        var count = 1 + (chunks % 6);
        var whole = Chunks.RandomBytes(((count - 1) * ChunkSize) + 1 + (lastLength % ChunkSize), chunks + lastLength);
        var transferId = $"tr-{Interlocked.Increment(ref _transfers)}";
        var messages = Chunks.OfFile("dev-prop", transferId, whole, ChunkSize);
        var keys = orderKeys ?? [];
        var arrivals = Enumerable.Range(0, count)
            .Concat((resends ?? []).Take(12).Select(r => (int)((uint)r % (uint)count)))
            .Select((index, i) => (Index: index, Key: keys.Length == 0 ? i : keys[i % keys.Length] ^ i))
            .OrderBy(a => a.Key)
            .Select(a => a.Index)
            .ToList();

        var results = new List<IngestResult>();
        foreach (var window in arrivals.Chunk(1 + (inFlight % 3)))
        {
            var taken = Task.WhenAll(window.Select(i => _ingest.Start("dev-prop", null, messages[i].UserProperties, messages[i].ContentType, new ReadOnlySequence<byte>(messages[i].Payload.ToArray())))).GetAwaiter().GetResult();
            results.AddRange(taken.Select(t => t.Result));
        }

        var files = _registry.ListFilesAsync("dev-prop", 1000).GetAwaiter().GetResult().Where(f => f.TransferId == transferId).ToList();
        if (files.Count != 1)
        {
            return false;
        }

        using var stored = _blobs.OpenRead(files[0].BlobKey)!;
        using var copy = new MemoryStream();
        stored.CopyTo(copy);
        return copy.ToArray().AsSpan().SequenceEqual(whole)
            && results.Count(r => r == IngestResult.Stored) == count
            && results.Count(r => r == IngestResult.Duplicate) == arrivals.Count - count
            && !_blobs.ListStaged().Any();
    }
}
