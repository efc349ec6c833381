using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using Enroll.Device.Requests;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// Reports the device's outbox to the server on <c>enroll/v1/devices/{device_id}/status</c>
/// (<see cref="EnrollRequests.DeviceStatus"/>): once after each new connection, then whenever the outbox's depth, bytes or
/// quarantine changed, at most once per <see cref="EnrollDeviceOptions.StatusReportInterval"/> (the wait is the
/// <see cref="TimeProvider"/>'s). It uses the connection the other loops keep (it never connects itself, so a broker that
/// is down sees no more connects), reads the outbox's statistics on its own read connection and sends on its own loop, so
/// it never holds up a send or the publisher; a report that fails is logged at Debug and sent again at the next look.
/// </summary>
internal sealed class DeviceStatusReporter : BackgroundService
{
    private readonly IDeviceConnection _connection;
    private readonly RequestChannel _channel;
    private readonly ServerRequestSender _sender;
    private readonly DeviceOutbox _outbox;
    private readonly TimeSpan _interval;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;

    public DeviceStatusReporter(IDeviceConnection connection, RequestChannel channel, ServerRequestSender sender, DeviceOutbox outbox, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<DeviceStatusReporter> logger)
    {
        _connection = connection;
        _channel = channel;
        _sender = sender;
        _outbox = outbox;
        _interval = options.Value.StatusReportInterval;
        _timeProvider = timeProvider;
        _logger = logger;
    }

    /// <summary>What a report says, less the oldest age (which changes all the time and alone is no reason to report).</summary>
    private readonly record struct Snapshot(long Pending, long Bytes, long Quarantined);

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_interval <= TimeSpan.Zero)
        {
            return;
        }

        // It never connects by itself (the publisher and the twin loop keep the device connected, with their backoff): it
        // reports on the connection they made, woken when one is made.
        var wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Action<ConnectionCredentials> onConnected = _ => Volatile.Read(ref wake).TrySetResult();
        _connection.Connected += onConnected;
        try
        {
            long reportedIn = -1;
            Snapshot? reported = null;
            DateTimeOffset? lastAttempt = null;
            while (!stoppingToken.IsCancellationRequested)
            {
                var wait = _interval;
                var now = _timeProvider.GetUtcNow();
                if (lastAttempt is { } last && now - last < _interval)
                {
                    wait = _interval - (now - last);
                }
                else if (_connection.IsConnected && _connection.Credentials is { IsAuthenticated: true, Username: { } deviceId })
                {
                    var link = new DeviceLink(_connection, deviceId, _connection.Generation);
                    try
                    {
                        var statistics = _outbox.GetStatistics();
                        var snapshot = new Snapshot(statistics.Depth, statistics.Bytes, statistics.Quarantined);
                        if (link.Generation != reportedIn || snapshot != reported)
                        {
                            lastAttempt = now;
                            await ReportAsync(link, statistics, stoppingToken).ConfigureAwait(false);
                            reportedIn = link.Generation;
                            reported = snapshot;
                            Log.StatusReported(_logger, snapshot.Pending, snapshot.Bytes, snapshot.Quarantined);
                        }
                    }
                    catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (EnrollException ex) when (ex is not OutboxStorageException)
                    {
                        // Not connected any more, no answer, refused: the next look sends it again (reportedIn and reported are unchanged).
                        Log.StatusReportFailed(_logger, ex.Message, _interval);
                    }
#pragma warning disable CA1031 // the outbox file unreadable for a moment (locked, damaged): the report waits for the next look; the publisher reports the fault
                    catch (Exception ex) when (ex is not OperationCanceledException)
#pragma warning restore CA1031
                    {
                        Log.StatusUnreadable(_logger, ex.Message, _interval);
                    }
                }

                var woken = Volatile.Read(ref wake);
                try
                {
                    using var timer = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    await Task.WhenAny(woken.Task, Task.Delay(wait, _timeProvider, timer.Token)).ConfigureAwait(false);
                    await timer.CancelAsync().ConfigureAwait(false);
                }
                finally
                {
                    if (woken.Task.IsCompleted)
                    {
                        Interlocked.CompareExchange(ref wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), woken);
                    }
                }
            }
        }
        finally
        {
            _connection.Connected -= onConnected;
        }
    }

    private async Task ReportAsync(DeviceLink link, OutboxStatistics statistics, CancellationToken cancellationToken)
    {
        await _channel.EnsureSubscribedAsync([EnrollTopics.DeviceResponses(link.DeviceId)], 1, cancellationToken).ConfigureAwait(false);
        var outbox = new DeviceOutboxStatus
        {
            Pending = statistics.Depth,
            PendingBytes = statistics.Bytes,
            OldestAgeSeconds = statistics.Depth > 0 ? statistics.OldestAge?.TotalSeconds is { } age ? Math.Max(0, age) : null : null,
            Quarantined = statistics.Quarantined,
        };
        var at = _timeProvider.GetUtcNow();
        await _sender.SendAsync(
            EnrollRequests.DeviceStatus,
            requestId => new DeviceStatusRequest { Outbox = outbox, At = at, RequestId = requestId },
            () => Credentials(link),
            _ => EnrollTopics.DeviceResponses(link.DeviceId),
            null,
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The connection's credentials when it speaks as the device (renewed tokens included), else the link's.</summary>
    private ConnectionCredentials Credentials(DeviceLink link) =>
        _connection.Credentials is { IsAuthenticated: true } current && current.Username == link.DeviceId
            ? current
            : link.Connection.Credentials ?? throw new EnrollConnectionException("not connected as the device");
}
