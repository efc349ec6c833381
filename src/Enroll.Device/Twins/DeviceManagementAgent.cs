using System.Collections.Concurrent;
using System.Threading.Channels;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Device.Outbox;
using Enroll.Device.Requests;
using Enroll.Device.State;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Device;

/// <summary>
/// Keeps the twin and the commands in step with the server over the device's own connection (SPEC §2.5, §2.6). On every
/// (re)connect: subscribes to <c>twin/desired</c> and <c>commands</c>, sends twin/get with the applied desired version and
/// applies the answer, sends the reported changes the server has not acknowledged, marks the twin synchronized, then asks
/// for the pending commands. Between connects it applies pushed desired patches (a version that is not the next one makes
/// it ask again), sends new reports, and runs delivered commands off the receive loop, sending each result until the
/// server acknowledges it. Two loops under <see cref="Supervisor"/>: the twin's and the commands' (a slow command server
/// never holds up the twin).
/// </summary>
internal sealed class DeviceManagementAgent : BackgroundService
{
    /// <summary>How often the change watch looks for work another process stored in the management file (an <c>enroll device report</c>, a result).</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    private readonly DeviceSession _session;
    private readonly IDeviceConnection _connection;
    private readonly RequestChannel _channel;
    private readonly ServerRequestSender _sender;
    private readonly DeviceTwin _twin;
    private readonly DeviceCommands _commands;
    private readonly ManagementStoreHandle _store;
    private readonly EnrollDeviceOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly DeviceHealth _health;
    private readonly Jitter _jitter;
    private readonly Channel<TwinDesiredPatch> _pushes = Channel.CreateUnbounded<TwinDesiredPatch>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<string, Task> _running = new(StringComparer.Ordinal);
    private readonly Signal _twinWork = new();
    private readonly Signal _commandWork = new();
    private long _pendingWanted = -1;
    private CancellationToken _stopping;

    public DeviceManagementAgent(DeviceSession session, IDeviceConnection connection, RequestChannel channel, ServerRequestSender sender, DeviceTwin twin, DeviceCommands commands, ManagementStoreHandle store, IOptions<EnrollDeviceOptions> options, TimeProvider timeProvider, ILogger<DeviceManagementAgent> logger, DeviceHealth health, Jitter jitter)
    {
        _session = session;
        _connection = connection;
        _channel = channel;
        _sender = sender;
        _twin = twin;
        _commands = commands;
        _store = store;
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _health = health;
        _jitter = jitter;
        _connection.MessageReceived += OnMessageAsync;
        _connection.Disconnected += _ =>
        {
            _twin.SetSynchronized(false);
            _twinWork.Set();
            _commandWork.Set();
        };
        _twin.ReportQueued += _twinWork.Set;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _stopping = stoppingToken;
        try
        {
            await Task.WhenAll(
                Supervisor.RunAsync(DeviceComponents.Twin, RunTwinAsync, _health, _jitter, _timeProvider, _logger, stoppingToken),
                Supervisor.RunAsync(DeviceComponents.Commands, RunCommandsAsync, _health, _jitter, _timeProvider, _logger, stoppingToken),
                StateChangeWatch.RunAsync(() => _store.Store.ChangeVersion(), WakeBoth, PollInterval, _timeProvider, stoppingToken)).ConfigureAwait(false);
        }
        finally
        {
            // Handlers see the stop through their token; their results (if any) are stored before the agent ends.
            await Task.WhenAll(_running.Values).ConfigureAwait(false);
        }
    }

    // Another process wrote the management file (a queued report, a result): both loops look again.
    private void WakeBoth()
    {
        _twinWork.Set();
        _commandWork.Set();
    }

    private async Task RunTwinAsync(CancellationToken stoppingToken)
    {
        var synchronizedIn = -1L;
        var failures = 0;
        var needsGet = false;
        Task<bool>? pushed = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var link = await _session.ConnectAsync(stoppingToken).ConfigureAwait(false);
                if (link.Generation != synchronizedIn)
                {
                    _twin.SetSynchronized(false);
                    await SubscribeAsync(link, stoppingToken).ConfigureAwait(false);
                    await GetTwinAsync(link, stoppingToken).ConfigureAwait(false);
                    await ReportAsync(link, stoppingToken).ConfigureAwait(false);
                    synchronizedIn = link.Generation;
                    needsGet = false;
                    if (link.IsCurrent)
                    {
                        _twin.SetSynchronized(true);
                        Log.TwinSynchronized(_logger, _twin.DesiredVersion);
                    }

                    Volatile.Write(ref _pendingWanted, link.Generation);
                    _commandWork.Set();
                }

                while (_pushes.Reader.TryRead(out var push))
                {
                    if (!await _twin.ApplyPushAsync(push, stoppingToken).ConfigureAwait(false))
                    {
                        needsGet = true;
                    }
                }

                if (needsGet)
                {
                    await GetTwinAsync(link, stoppingToken).ConfigureAwait(false);
                    needsGet = false;
                }

                await ReportAsync(link, stoppingToken).ConfigureAwait(false);
                failures = 0;
                _health.Clear(DeviceComponents.Twin);
                // One wait on the channel until a push arrives (a new one each poll would pile up waiters).
                if (pushed is null || pushed.IsCompleted)
                {
                    pushed = _pushes.Reader.WaitToReadAsync(stoppingToken).AsTask();
                }

                await _twinWork.WaitAsync(pushed, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (EnrollException ex) when (ex is EnrollConnectionException or EnrollTimeoutException or EnrollServerException { IsPermanent: false })
            {
                failures++;
                await Task.Delay(RetryDelay(DeviceComponents.Twin, Log.TwinRetry, ex, failures), _timeProvider, stoppingToken).ConfigureAwait(false);
            }
            catch (EnrollServerException ex)
            {
                await Task.Delay(RetryDelay(DeviceComponents.Twin, Log.TwinRetry, ex, failures: null), _timeProvider, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    private async Task RunCommandsAsync(CancellationToken stoppingToken)
    {
        var pendingAskedIn = -1L;
        var failures = 0;
        var interrupted = await _store.Store.InterruptRunningAsync("the device stopped while the command ran; it is not run again", stoppingToken).ConfigureAwait(false);
        if (interrupted > 0)
        {
            Log.CommandsInterrupted(_logger, interrupted);
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var results = _store.Store.UnacknowledgedResults();
                var wanted = Volatile.Read(ref _pendingWanted);
                if (results.Count > 0 || wanted != pendingAskedIn)
                {
                    var link = await _session.ConnectAsync(stoppingToken).ConfigureAwait(false);
                    foreach (var result in results)
                    {
                        await SendResultAsync(link, result, stoppingToken).ConfigureAwait(false);
                    }

                    if (wanted != pendingAskedIn && wanted == link.Generation && _options.ReceiveCommands)
                    {
                        await SubscribeAsync(link, stoppingToken).ConfigureAwait(false);
                        var answer = await _sender.SendAsync(
                            EnrollRequests.CommandsPending,
                            requestId => new CommandsPendingRequest { RequestId = requestId },
                            () => Credentials(link),
                            _ => EnrollTopics.DeviceResponses(link.DeviceId),
                            null,
                            stoppingToken).ConfigureAwait(false);
                        Log.CommandsPending(_logger, answer.Delivered ?? 0);
                    }

                    pendingAskedIn = wanted;
                }

                failures = 0;
                _health.Clear(DeviceComponents.Commands);
                await _commandWork.WaitAsync(null, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (EnrollException ex) when (ex is EnrollConnectionException or EnrollTimeoutException or EnrollServerException { IsPermanent: false })
            {
                failures++;
                await Task.Delay(RetryDelay(DeviceComponents.Commands, Log.CommandsRetry, ex, failures), _timeProvider, stoppingToken).ConfigureAwait(false);
            }
            catch (EnrollServerException ex)
            {
                await Task.Delay(RetryDelay(DeviceComponents.Commands, Log.CommandsRetry, ex, failures: null), _timeProvider, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    private Task SubscribeAsync(DeviceLink link, CancellationToken cancellationToken) =>
        _channel.EnsureSubscribedAsync(
            _options.ReceiveCommands
                ? [EnrollTopics.DeviceResponses(link.DeviceId), EnrollTopics.DeviceTwinDesired(link.DeviceId), EnrollTopics.DeviceCommands(link.DeviceId)]
                : [EnrollTopics.DeviceResponses(link.DeviceId), EnrollTopics.DeviceTwinDesired(link.DeviceId)],
            1,
            cancellationToken);

    /// <summary>The connection's credentials when it speaks as the device (renewed tokens included), else the link's.</summary>
    private ConnectionCredentials Credentials(DeviceLink link) =>
        _connection.Credentials is { IsAuthenticated: true } current && current.Username == link.DeviceId
            ? current
            : link.Connection.Credentials ?? throw new EnrollConnectionException("not connected as the device");

    private async Task GetTwinAsync(DeviceLink link, CancellationToken cancellationToken)
    {
        for (var round = 0; ; round++)
        {
            var version = _twin.DesiredVersion;
            var answer = await _sender.SendAsync(
                EnrollRequests.TwinGet,
                requestId => new TwinGetRequest { DesiredVersion = version, RequestId = requestId },
                () => Credentials(link),
                _ => EnrollTopics.DeviceResponses(link.DeviceId),
                null,
                cancellationToken).ConfigureAwait(false);
            if (await _twin.ApplyAsync(answer, cancellationToken).ConfigureAwait(false) || round >= 2)
            {
                return;
            }
        }
    }

    private async Task ReportAsync(DeviceLink link, CancellationToken cancellationToken)
    {
        while (true)
        {
            var state = _twin.Refresh();
            var patch = state.UnacknowledgedReport();
            if (patch.Count == 0)
            {
                return;
            }

            var sent = (System.Text.Json.Nodes.JsonObject)state.Reported.DeepClone();
            try
            {
                var answer = await _sender.SendAsync(
                    EnrollRequests.TwinReport,
                    requestId => new TwinReportRequest { Patch = (System.Text.Json.Nodes.JsonObject)patch.DeepClone(), RequestId = requestId },
                    () => Credentials(link),
                    _ => EnrollTopics.DeviceResponses(link.DeviceId),
                    null,
                    cancellationToken).ConfigureAwait(false);
                Log.ReportAcknowledged(_logger, answer.ReportedVersion ?? 0);
            }
            catch (EnrollServerException ex) when (ex.IsPermanent)
            {
                // The server refuses this report for good (over its limits): sending it again gets the same answer. The
                // device's reported document stays as it is; the refusal is reported, and the next report is diffed from it.
                Log.ReportRefused(_logger, ex.Message);
                _health.Report(DeviceComponents.Twin, DeviceFaultKind.MessageRefused, $"the server refused a reported patch: {ex.Message}");
            }

            await _twin.AcknowledgedAsync(sent, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task SendResultAsync(DeviceLink link, StoredCommandResult result, CancellationToken cancellationToken)
    {
        try
        {
            var answer = await _sender.SendAsync(
                EnrollRequests.CommandResult,
                requestId => new CommandResultRequest
                {
                    CommandId = result.CommandId,
                    Status = result.Status,
                    Payload = result.Payload?.DeepClone(),
                    Message = result.Message,
                    RequestId = requestId,
                },
                () => Credentials(link),
                _ => EnrollTopics.DeviceResponses(link.DeviceId),
                null,
                cancellationToken).ConfigureAwait(false);
            Log.ResultAcknowledged(_logger, result.CommandId, result.Status, answer.State ?? "?");
        }
        catch (EnrollServerException ex) when (ex.IsPermanent)
        {
            // The server will never take it (an unknown or foreign command ID): stop sending it.
            Log.ResultRefused(_logger, result.CommandId, ex.Message);
        }

        await _store.Store.SaveResultAcknowledgedAsync(result.CommandId, cancellationToken).ConfigureAwait(false);
    }

    private Task OnMessageAsync(IncomingMessage message)
    {
        if (_connection.Credentials is not { IsAuthenticated: true, Username: { } deviceId })
        {
            return Task.CompletedTask;
        }

        if (message.Topic == EnrollTopics.DeviceTwinDesired(deviceId))
        {
            if (EnrollJson.TryDeserialize(message.Payload, EnrollJsonContext.Default.TwinDesiredPatch, out var patch, out var error))
            {
                _pushes.Writer.TryWrite(patch);
            }
            else
            {
                Log.UnreadableManagementMessage(_logger, message.Topic, error ?? "not a desired patch");
            }
        }
        else if (message.Topic == EnrollTopics.DeviceCommands(deviceId) && _options.ReceiveCommands)
        {
            if (EnrollJson.TryDeserialize(message.Payload, EnrollJsonContext.Default.DeviceCommand, out var command, out var error)
                && command.CommandId is { Length: > 0 } commandId)
            {
                // Off the receive loop: a slow handler holds up nothing else. One run per command ID at a time.
                var run = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                if (_running.TryAdd(commandId, run.Task))
                {
                    _ = Task.Run(async () =>
                    {
                        try
                        {
                            await ExecuteAsync(command, commandId).ConfigureAwait(false);
                        }
                        finally
                        {
                            _running.TryRemove(commandId, out _);
                            run.TrySetResult();
                        }
                    });
                }
            }
            else
            {
                Log.UnreadableManagementMessage(_logger, message.Topic, error ?? "no command_id");
            }
        }

        return Task.CompletedTask;
    }

    private async Task ExecuteAsync(DeviceCommand command, string commandId)
    {
        var stopping = _stopping;
        var name = command.Name ?? string.Empty;
        try
        {
            if (await _store.Store.TryBeginAsync(commandId, name, stopping).ConfigureAwait(false) is { } stored)
            {
                // Delivered again (a lost acknowledgement, a restart): it does not run again; its stored result goes again.
                Log.CommandRedelivered(_logger, commandId, stored.Status);
                await _store.Store.ResendAsync(commandId, stopping).ConfigureAwait(false);
                _commandWork.Set();
                return;
            }

            var result = await RunHandlerAsync(command, commandId, name, stopping).ConfigureAwait(false);
            await _store.Store.FinishAsync(commandId, result.Status, result.Payload, result.Message, stopping).ConfigureAwait(false);
            Log.CommandFinished(_logger, commandId, name, result.Status);
            _sender.Metrics?.CommandHandled(result.Status);
            _commandWork.Set();
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopping while it ran: the next start answers it failed (interrupted), never runs it again.
        }
#pragma warning disable CA1031 // a command that cannot be recorded (the state folder failing) is logged; the server's redelivery tries again
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.CommandNotRecorded(_logger, commandId, ex);
        }
    }

    private async Task<CommandResult> RunHandlerAsync(DeviceCommand command, string commandId, string name, CancellationToken stopping)
    {
        var now = _timeProvider.GetUtcNow();
        if (command.ExpiresAt is { } expiresAt && expiresAt <= now)
        {
            return CommandResult.Failed($"expired before it ran (expires_at {expiresAt:O})");
        }

        if (_commands.HandlerFor(name) is not { } handler)
        {
            return CommandResult.Rejected($"the device has no handler for command '{name}'");
        }

        using var expiry = command.ExpiresAt is { } at ? new CancellationTokenSource(at - now, _timeProvider) : new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(expiry.Token, stopping);
        try
        {
            return await handler(new DeviceCommandRequest(commandId, name, command.Payload?.DeepClone(), command.ExpiresAt), linked.Token).ConfigureAwait(false)
                ?? CommandResult.Failed("the handler returned no result");
        }
        catch (OperationCanceledException) when (expiry.IsCancellationRequested && !stopping.IsCancellationRequested)
        {
            return CommandResult.Failed($"did not finish before it expired at {command.ExpiresAt:O}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !stopping.IsCancellationRequested)
        {
            return CommandResult.Failed(ex.Message);
        }
    }

    /// <summary>A wake-up for a loop: set by whoever has work for it, waited for with a poll interval.</summary>
    private sealed class Signal
    {
        private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Set() => Volatile.Read(ref _wake).TrySetResult();

        /// <summary>Waits until <see cref="Set"/> or until <paramref name="other"/> completes.</summary>
        public async Task WaitAsync(Task? other, CancellationToken cancellationToken)
        {
            var wake = Volatile.Read(ref _wake);
            await (other is null ? wake.Task : Task.WhenAny(wake.Task, other)).WaitAsync(cancellationToken).ConfigureAwait(false);
            if (wake.Task.IsCompleted)
            {
                Interlocked.CompareExchange(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), wake);
            }
        }
    }

    /// <summary>
    /// How long a loop waits after <paramref name="ex"/>, logged and reported on its health component. A passing fault
    /// (<paramref name="failures"/> in a row) backs off with jitter and shows in the health from the second one; a
    /// refusal for good (no <paramref name="failures"/>) is retried slowly, so the loop catches up as soon as the device is
    /// accepted again — the registration service deals with the device's standing.
    /// </summary>
    private TimeSpan RetryDelay(string component, Action<ILogger, string, TimeSpan> log, EnrollException ex, int? failures)
    {
        var delay = failures is { } count ? _jitter.Backoff(count, _options.InitialBackoff, _options.MaxBackoff) : _jitter.Spread(_options.MaxBackoff);
        log(_logger, ex.Message, delay);
        DeviceFaultKind? fault = failures switch
        {
            null => DeviceFaultKind.ServerRefused,
            > 1 => ex is EnrollConnectionException ? DeviceFaultKind.BrokerUnreachable : DeviceFaultKind.ServerBusy,
            _ => null,
        };
        if (fault is { } kind)
        {
            _health.Report(component, kind, $"{ex.Message} (trying again in {delay.TotalSeconds:0.#} s)");
        }

        return delay;
    }
}
