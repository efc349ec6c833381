using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Enroll.Protocol.Admin;
using Enroll.Server.Commands;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>
/// <c>GET /api/events</c>: the registry's changes as server-sent events. The first event is <c>resync</c> (the stream is
/// live: load what is shown); then one event per change announced by <see cref="ConsoleFeed"/> (or a finished command),
/// written as the record is now (loaded by ID), and a comment heartbeat every <see cref="Heartbeat"/>. Each stream has a
/// bounded queue: when a slow client lets it fill, changes are dropped and a single <c>resync</c> is sent instead, so the
/// feed never waits for a client. At most <see cref="EnrollServerOptions.MaxEventStreams"/> streams at once (503 beyond).
/// </summary>
internal sealed partial class EventsApi(
    IRegistryChanges changes,
    IOperationStore operations,
    ICommandStore commands,
    IDeviceStore devices,
    IHostApplicationLifetime lifetime,
    TimeProvider timeProvider,
    IOptions<EnrollServerOptions> options,
    ILogger<EventsApi> logger)
{
    /// <summary>How often an idle stream sends a comment line, so proxies and clients see it is alive.</summary>
    public static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(15);

    /// <summary>Changes one stream holds for its client before it drops them and sends <c>resync</c>.</summary>
    public const int QueueCapacity = 256;

    private int _streams;

    /// <summary>Streams open now.</summary>
    public int Streams => Volatile.Read(ref _streams);

    public async Task StreamAsync(HttpContext http)
    {
        var max = options.Value.MaxEventStreams;
        if (Interlocked.Increment(ref _streams) > max)
        {
            Interlocked.Decrement(ref _streams);
            LogTooManyStreams(logger, max);
            http.Response.Headers.RetryAfter = "5";
            await AdminApi.Problem(StatusCodes.Status503ServiceUnavailable, "too many event streams", $"at most {max} event streams may be open at once (--max-event-streams); try again later")
                .ExecuteAsync(http).ConfigureAwait(false);
            return;
        }

        try
        {
            await RunAsync(http).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _streams);
        }
    }

    private async Task RunAsync(HttpContext http)
    {
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, lifetime.ApplicationStopping);
        var cancellationToken = ended.Token;
        var queue = Channel.CreateBounded<RegistryChange>(new BoundedChannelOptions(QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        var overflowed = 0;
        using var subscription = changes.Observe(change =>
        {
            if (IsShown(change) && !queue.Writer.TryWrite(change))
            {
                Volatile.Write(ref overflowed, 1);
            }

            return Task.CompletedTask;
        });

        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        try
        {
            await WriteAsync(http.Response, new ServerEvent { Kind = "resync" }, cancellationToken).ConfigureAwait(false);
            while (!cancellationToken.IsCancellationRequested)
            {
                using var nap = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var wait = queue.Reader.WaitToReadAsync(nap.Token).AsTask();
                var beat = Task.Delay(Heartbeat, timeProvider, nap.Token);
                if (await Task.WhenAny(wait, beat).ConfigureAwait(false) == beat)
                {
                    await nap.CancelAsync().ConfigureAwait(false);
                    await http.Response.WriteAsync(": heartbeat\n\n", cancellationToken).ConfigureAwait(false);
                    await http.Response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }

                await nap.CancelAsync().ConfigureAwait(false);
                if (Interlocked.Exchange(ref overflowed, 0) == 1)
                {
                    while (queue.Reader.TryRead(out _))
                    {
                    }

                    LogStreamOverflowed(logger, QueueCapacity);
                    await WriteAsync(http.Response, new ServerEvent { Kind = "resync" }, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                // At most one queue's worth per wake, so one wake is bounded too.
                for (var i = 0; i < QueueCapacity && queue.Reader.TryRead(out var change); i++)
                {
                    if (await LoadAsync(change, cancellationToken).ConfigureAwait(false) is { } shown)
                    {
                        await WriteAsync(http.Response, shown, cancellationToken).ConfigureAwait(false);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away or the server is stopping: the stream ends.
        }
        catch (IOException) when (http.RequestAborted.IsCancellationRequested)
        {
        }
    }

    private static bool IsShown(RegistryChange change) => change.Kind is ConsoleFeed.Operations or ConsoleFeed.Commands or ConsoleFeed.Devices or ConsoleFeed.Twins or CommandWaiters.ChangeKind or RegistryChange.Everything;

    /// <summary>The event a change becomes, with the record as it is now; null when it no longer exists.</summary>
    private async Task<ServerEvent?> LoadAsync(RegistryChange change, CancellationToken cancellationToken)
    {
        if (change.Kind == RegistryChange.Everything || change.Id is not { } id)
        {
            return new ServerEvent { Kind = "resync" };
        }

        switch (change.Kind)
        {
            case ConsoleFeed.Operations:
                var operation = await operations.FindOperationAsync(id, cancellationToken).ConfigureAwait(false);
                return operation is null ? null : new ServerEvent { Kind = "operation", DeviceId = operation.DeviceId, Operation = AdminApi.ToInfo(operation) };
            case ConsoleFeed.Commands or CommandWaiters.ChangeKind:
                var command = await commands.GetCommandAsync(id, cancellationToken).ConfigureAwait(false);
                return command is null ? null : new ServerEvent { Kind = "command", DeviceId = command.DeviceId, Command = CommandApi.ToInfo(command) };
            case ConsoleFeed.Devices:
                var device = await devices.FindDeviceAsync(id, cancellationToken).ConfigureAwait(false);
                return device is null ? null : new ServerEvent { Kind = "device", DeviceId = device.DeviceId, Device = AdminApi.ToInfo(device) };
            default:
                return new ServerEvent { Kind = "twin", DeviceId = id };
        }
    }

    private static async Task WriteAsync(HttpResponse response, ServerEvent shown, CancellationToken cancellationToken)
    {
        var json = JsonSerializer.Serialize(shown, ConsoleJsonContext.Default.ServerEvent);
        await response.WriteAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"event: {shown.Kind}\ndata: {json}\n\n"), Encoding.UTF8, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 2051, Level = LogLevel.Warning, Message = "An event stream was refused: {Max} are open already (--max-event-streams)")]
    private static partial void LogTooManyStreams(ILogger logger, int max);

    [LoggerMessage(EventId = 2052, Level = LogLevel.Information, Message = "An event stream's client fell {Capacity} changes behind; it was sent resync instead")]
    private static partial void LogStreamOverflowed(ILogger logger, int capacity);
}
