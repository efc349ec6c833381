using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Server.Domain;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Server.Broker.Mosquitto;

/// <summary>
/// Administers Mosquitto's dynamic-security plugin (<c>mosquitto_dynamic_security.so</c>) over its control topic, on a
/// connection of its own as the server's broker user (who needs the plugin's admin role): every access token the server
/// issues becomes the password of a dynsec client named by the Device ID, bound to the device's MQTT client ID, with a
/// role of its own that grants its topics literally (Mosquitto 2.0's dynamic-security ACLs do not substitute
/// <c>%u</c>/<c>%c</c>); a revoked device's client is disabled, which makes Mosquitto drop its session and refuse it.
/// </summary>
internal sealed partial class MosquittoDynamicSecurity : IBrokerCredentials, IDeviceSessions, IHostedService, IDisposable
{
    /// <summary>The plugin's command topic.</summary>
    public const string ControlTopic = "$CONTROL/dynamic-security/v1";

    /// <summary>The topic the plugin answers commands on (to every subscriber: answers are matched by correlation data).</summary>
    public const string ResponseTopic = ControlTopic + "/response";

    /// <summary>Attempts of one batch of commands when the broker does not answer in time or the connection drops.</summary>
    public const int MaxAttempts = 3;

    /// <summary>How often clients whose last token expired are disabled.</summary>
    public static readonly TimeSpan SweepInterval = TimeSpan.FromMinutes(1);

    /// <summary>Most clients one sweep disables; the rest wait for the next sweep.</summary>
    public const int MaxDisabledPerSweep = 1000;

    /// <summary>The client's text name carries its token's expiry (Unix seconds), so every instance's sweep can read it.</summary>
    public const string ExpiryPrefix = "enroll-expires:";

    private const int SweepPageSize = 500;
    private static readonly TimeSpan BaseRetryDelay = TimeSpan.FromMilliseconds(200);

    private readonly EnrollServerOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<MosquittoDynamicSecurity> _logger;
    private readonly IMqttClient _client;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private readonly ConcurrentDictionary<string, TaskCompletionSource<IReadOnlyList<CommandResult>>> _pending = new(StringComparer.Ordinal);
    private readonly Counter<long> _errors;
    private readonly string _instance = NewBatchId();
    private readonly CancellationTokenSource _stopping = new();
    private Task _sweeper = Task.CompletedTask;
    private long _nextBatch;
    private long _errorCount;
    private long _sweeps;

    public MosquittoDynamicSecurity(IOptions<EnrollServerOptions> options, TimeProvider timeProvider, IMeterFactory meterFactory, ILogger<MosquittoDynamicSecurity> logger)
    {
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        Endpoint = _options.ExternalBroker ?? throw new InvalidOperationException("the Mosquitto dynamic-security administrator needs an external broker (--broker)");
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnResponseAsync;
        _errors = meterFactory.Create(Diagnostics.ServerInstruments.MeterName)
            .CreateCounter<long>(Diagnostics.ServerInstruments.BrokerAdminErrors, Diagnostics.ServerInstruments.Get(Diagnostics.ServerInstruments.BrokerAdminErrors).Unit, Diagnostics.ServerInstruments.Get(Diagnostics.ServerInstruments.BrokerAdminErrors).Description);
    }

    public Uri Endpoint { get; }

    /// <summary>How long the broker has to answer one batch of commands.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Commands that failed or went unanswered since start (also the <c>enroll.server.broker.admin.errors</c> counter).</summary>
    public long ErrorCount => Interlocked.Read(ref _errorCount);

    /// <summary>Expiry sweeps finished since start (each one disabled what had expired).</summary>
    public long SweepsCompleted => Interlocked.Read(ref _sweeps);

    /// <summary>True: disabling a device's client makes Mosquitto end its session.</summary>
    public bool CanDisconnect => true;

    /// <summary>The dynsec role of <paramref name="deviceId"/>: its own, since a role cannot name "the connected user".</summary>
    public static string RoleName(string deviceId) => "enroll-device-" + deviceId;

    /// <summary>
    /// What the device's role grants, literally: publish and subscribe in its own namespace, publish the requests, read
    /// the server's keys. Everything else is refused (the plugin's defaults for sending and subscribing are "deny").
    /// </summary>
    public static IReadOnlyList<(string AclType, string Topic)> DeviceAcls(string deviceId)
    {
        var own = EnrollTopics.DeviceNamespace(deviceId) + "#";
        var acls = new List<(string, string)> { ("publishClientSend", own), ("publishClientReceive", own), ("subscribePattern", own), ("unsubscribePattern", own) };
        acls.AddRange(EnrollRequests.Open.Select(request => ("publishClientSend", request.Topic)));
        acls.Add(("subscribePattern", EnrollTopics.ServerKeys));
        acls.Add(("publishClientReceive", EnrollTopics.ServerKeys));
        return acls;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Start-up fails at once when the broker refuses the administrator, not on the first registration.
        await EnsureConnectedAsync(cancellationToken).ConfigureAwait(false);
        LogConnected(_logger, Endpoint, _options.BrokerUsername);
        _sweeper = SweepLoopAsync(_stopping.Token);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _sweeper.ConfigureAwait(false);
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync(new MqttClientDisconnectOptions(), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Creates the device's client and role, or sets the client's password to the new token (the old one fails from now
    /// on), binds it to <paramref name="clientId"/> and enables it (a device whose tokens were revoked and that was
    /// provisioned again). One round trip; "already exists" answers to the create and add commands are expected.
    /// </summary>
    public async Task DeviceTokenIssuedAsync(string deviceId, string clientId, string accessToken, DateTimeOffset expiresAt, CancellationToken cancellationToken)
    {
        var role = RoleName(deviceId);
        // The role's ACLs are added one by one, "already exists" expected: a request type added to the table since the
        // role was made reaches the device at its next token.
        var commands = new List<Command> { new("createRole", w => w.WriteString("rolename", role), Tolerated: "Role already exists") };
        foreach (var (type, topic) in DeviceAcls(deviceId))
        {
            commands.Add(new Command("addRoleACL", w =>
            {
                w.WriteString("rolename", role);
                w.WriteString("acltype", type);
                w.WriteString("topic", topic);
                w.WriteBoolean("allow", true);
            }, Tolerated: "ACL with this topic already exists"));
        }

        commands.AddRange(
        [
            new Command("createClient", w => WriteClient(w, deviceId, clientId, accessToken, expiresAt, role), Tolerated: "Client already exists"),
            new Command("modifyClient", w => WriteClient(w, deviceId, clientId, accessToken, expiresAt, role)),
            new Command("enableClient", w => w.WriteString("username", deviceId)),
        ]);

        try
        {
            var batch = commands.ToArray();
            var results = await SendAsync(batch, cancellationToken).ConfigureAwait(false);
            ThrowOnError(batch, results, $"device '{deviceId}'");
        }
        catch (BrokerAdminException ex)
        {
            LogCommandFailed(_logger, "set the access token of", deviceId, ex.Message);
            throw new RejectedException(ErrorCodes.Unavailable, "the broker could not be given the device's credentials; send the request again", retryAfterSeconds: 5);
        }
    }

    /// <summary>Disables the device's client: Mosquitto drops its session and refuses it until a new token enables it.</summary>
    public async Task DeviceTokensRevokedAsync(string deviceId, CancellationToken cancellationToken)
    {
        try
        {
            await DisableAsync(deviceId, cancellationToken).ConfigureAwait(false);
        }
        catch (BrokerAdminException ex)
        {
            LogCommandFailed(_logger, "disable", deviceId, ex.Message);
        }
    }

    /// <summary>
    /// Disables the revoked device's client: <see cref="DisconnectResult.Disconnected"/> once Mosquitto has dropped any
    /// session it had and refuses it; <see cref="DisconnectResult.NotConnected"/> when the broker never knew the device;
    /// <see cref="DisconnectResult.Failed"/> when the broker did not carry it out (logged, counted).
    /// </summary>
    public async Task<DisconnectResult> DisconnectAsync(string deviceId, string clientId, CancellationToken cancellationToken = default)
    {
        try
        {
            return await DisableAsync(deviceId, cancellationToken).ConfigureAwait(false) ? DisconnectResult.Disconnected : DisconnectResult.NotConnected;
        }
        catch (BrokerAdminException ex)
        {
            LogCommandFailed(_logger, "disable", deviceId, ex.Message);
            return DisconnectResult.Failed;
        }
    }

    /// <summary>False when the broker has no client <paramref name="deviceId"/>.</summary>
    private async Task<bool> DisableAsync(string deviceId, CancellationToken cancellationToken)
    {
        var commands = new[] { new Command("disableClient", w => w.WriteString("username", deviceId), Tolerated: "Client not found") };
        var results = await SendAsync(commands, cancellationToken).ConfigureAwait(false);
        ThrowOnError(commands, results, $"device '{deviceId}'");
        return results[0].Error is null;
    }

    private static void WriteClient(Utf8JsonWriter w, string deviceId, string clientId, string accessToken, DateTimeOffset expiresAt, string role)
    {
        w.WriteString("username", deviceId);
        w.WriteString("textname", ExpiryPrefix + expiresAt.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture));
        w.WriteString("password", accessToken);
        w.WriteString("clientid", clientId);
        w.WriteStartArray("roles");
        w.WriteStartObject();
        w.WriteString("rolename", role);
        w.WriteEndObject();
        w.WriteEndArray();
    }

    /// <summary>
    /// Every <see cref="SweepInterval"/>: disables the clients whose last token has expired (the plugin knows no expiry,
    /// so Mosquitto would accept an expired token as the password). A failed sweep is logged; the next one tries again.
    /// </summary>
    private async Task SweepLoopAsync(CancellationToken cancellationToken)
    {
        var swept = false;
        while (!cancellationToken.IsCancellationRequested)
        {
            // The next wait is armed before the last sweep is reported done, so a clock advanced at that moment is seen.
            var wait = Task.Delay(SweepInterval, _timeProvider, cancellationToken);
            if (swept)
            {
                Interlocked.Increment(ref _sweeps);
            }

            try
            {
                await wait.ConfigureAwait(false);
                var disabled = await DisableExpiredAsync(cancellationToken).ConfigureAwait(false);
                if (disabled > 0)
                {
                    LogExpiredDisabled(_logger, disabled);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (BrokerAdminException ex)
            {
                LogSweepFailed(_logger, ex.Message);
            }

            swept = true;
        }
    }

    /// <summary>
    /// Disables up to <see cref="MaxDisabledPerSweep"/> enabled clients whose token (by their <see cref="ExpiryPrefix"/>
    /// text name) expired, reading the plugin's client list a page at a time; returns how many. A device that renews
    /// later is enabled again by <see cref="DeviceTokenIssuedAsync"/>.
    /// </summary>
    internal async Task<int> DisableExpiredAsync(CancellationToken cancellationToken)
    {
        var now = _timeProvider.GetUtcNow().ToUnixTimeSeconds();
        var expired = new List<string>();
        for (var offset = 0; expired.Count < MaxDisabledPerSweep; offset += SweepPageSize)
        {
            var page = offset;
            var list = new[]
            {
                new Command("listClients", w =>
                {
                    w.WriteBoolean("verbose", true);
                    w.WriteNumber("count", SweepPageSize);
                    w.WriteNumber("offset", page);
                }),
            };
            var result = (await SendAsync(list, cancellationToken).ConfigureAwait(false))[0];
            ThrowOnError(list, [result], "the client list");
            if (result.Data is not { } data || !data.TryGetProperty("clients", out var clients) || clients.GetArrayLength() == 0)
            {
                break;
            }

            foreach (var client in clients.EnumerateArray())
            {
                if (client.TryGetProperty("textname", out var name) && name.GetString() is { } text && text.StartsWith(ExpiryPrefix, StringComparison.Ordinal)
                    && long.TryParse(text.AsSpan(ExpiryPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var expires) && expires <= now
                    && !(client.TryGetProperty("disabled", out var disabled) && disabled.ValueKind == JsonValueKind.True)
                    && client.TryGetProperty("username", out var user) && user.GetString() is { } username && expired.Count < MaxDisabledPerSweep)
                {
                    expired.Add(username);
                }
            }

            if (clients.GetArrayLength() < SweepPageSize)
            {
                break;
            }
        }

        foreach (var chunk in expired.Chunk(100))
        {
            var commands = chunk.Select(username => new Command("disableClient", w => w.WriteString("username", username), Tolerated: "Client not found")).ToArray();
            ThrowOnError(commands, await SendAsync(commands, cancellationToken).ConfigureAwait(false), "expired clients");
        }

        return expired.Count;
    }

    private void ThrowOnError(Command[] commands, IReadOnlyList<CommandResult> results, string subject)
    {
        var failures = new List<string>();
        for (var i = 0; i < commands.Length; i++)
        {
            var result = i < results.Count ? results[i] : new CommandResult(commands[i].Name, "no answer to this command");
            if (result.Error is { } error && !string.Equals(error, commands[i].Tolerated, StringComparison.Ordinal))
            {
                failures.Add($"{commands[i].Name}: {error}");
            }
        }

        if (failures.Count > 0)
        {
            CountErrors(failures.Count);
            throw new BrokerAdminException($"the broker refused commands for {subject}: {string.Join("; ", failures)}");
        }
    }

    /// <summary>
    /// Sends <paramref name="commands"/> as one batch and returns the plugin's answer to each, in order. A batch the
    /// broker does not answer within <see cref="CommandTimeout"/> (or that a dropped connection lost) is sent again, at
    /// most <see cref="MaxAttempts"/> times, after a jittered, growing delay; the commands are idempotent as written.
    /// </summary>
    internal async Task<IReadOnlyList<CommandResult>> SendAsync(IReadOnlyList<Command> commands, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var batch = string.Create(CultureInfo.InvariantCulture, $"{_instance}.{Interlocked.Increment(ref _nextBatch)}");
            var answer = new TaskCompletionSource<IReadOnlyList<CommandResult>>(TaskCreationOptions.RunContinuationsAsynchronously);
            _pending[batch] = answer;
            try
            {
                await EnsureConnectedAsync(cancellationToken).ConfigureAwait(false);
                var message = new MqttApplicationMessage
                {
                    Topic = ControlTopic,
                    Payload = new ReadOnlySequence<byte>(Render(commands, batch)),
                    QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce,
                };
                var published = await _client.PublishAsync(message, cancellationToken).ConfigureAwait(false);
                if (!published.IsSuccess)
                {
                    CountErrors(commands.Count);
                    throw new BrokerAdminException($"the broker refused the command message ({published.ReasonCode}); grant user '{_options.BrokerUsername}' the dynamic-security admin role");
                }

                return await answer.Task.WaitAsync(CommandTimeout, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is TimeoutException or MQTTnet.Exceptions.MqttCommunicationException or System.Net.Sockets.SocketException
                                       && !cancellationToken.IsCancellationRequested)
            {
                if (attempt >= MaxAttempts)
                {
                    CountErrors(commands.Count);
                    throw new BrokerAdminException($"the broker at {Endpoint} did not answer {commands[0].Name} after {attempt} attempts: {ex.Message}", ex);
                }

                LogRetry(_logger, commands[0].Name, attempt, ex.Message);
                await Task.Delay(RetryDelay(attempt), _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _pending.TryRemove(batch, out _);
            }
        }
    }

    /// <summary>200 ms, 400 ms, ... times a factor in [0.5, 1.5): instances that lost the broker together do not return together.</summary>
    internal static TimeSpan RetryDelay(int attempt) =>
        BaseRetryDelay * Math.Pow(2, attempt - 1) * (0.5 + (RandomNumberGenerator.GetInt32(1000) / 1000.0));

    internal static byte[] Render(IReadOnlyList<Command> commands, string batch)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("commands");
            for (var i = 0; i < commands.Count; i++)
            {
                w.WriteStartObject();
                w.WriteString("command", commands[i].Name);
                commands[i].Fields(w);
                w.WriteString("correlationData", string.Create(CultureInfo.InvariantCulture, $"{batch}/{i}"));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The plugin answers a batch with <c>{"responses":[{"command","error"?,"correlationData"}...]}</c>, in order.</summary>
    private Task OnResponseAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        if (!string.Equals(e.ApplicationMessage.Topic, ResponseTopic, StringComparison.Ordinal))
        {
            return Task.CompletedTask;
        }

        try
        {
            using var document = JsonDocument.Parse(e.ApplicationMessage.Payload);
            if (!document.RootElement.TryGetProperty("responses", out var responses) || responses.ValueKind != JsonValueKind.Array)
            {
                return Task.CompletedTask;
            }

            string? batch = null;
            var results = new List<CommandResult>();
            foreach (var response in responses.EnumerateArray())
            {
                var command = response.TryGetProperty("command", out var name) ? name.GetString() ?? "" : "";
                var error = response.TryGetProperty("error", out var text) ? text.GetString() : null;
                JsonElement? data = response.TryGetProperty("data", out var payload) ? payload.Clone() : null;
                if (batch is null && response.TryGetProperty("correlationData", out var correlation) && correlation.GetString() is { } value && value.LastIndexOf('/') is var slash and > 0)
                {
                    batch = value[..slash];
                }

                results.Add(new CommandResult(command, error) { Data = data });
            }

            // Every server instance subscribed to the response topic sees every answer; only the asker has the batch.
            if (batch is not null && _pending.TryGetValue(batch, out var waiting))
            {
                waiting.TrySetResult(results);
            }
        }
        catch (JsonException)
        {
            // Not an answer of the plugin's (another client may publish here only with the admin role): ignore.
        }

        return Task.CompletedTask;
    }

    private async Task EnsureConnectedAsync(CancellationToken cancellationToken)
    {
        if (_client.IsConnected)
        {
            return;
        }

        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_client.IsConnected)
            {
                return;
            }

            var port = Endpoint.IsDefaultPort || Endpoint.Port <= 0 ? 1883 : Endpoint.Port;
            var builder = new MqttClientOptionsBuilder()
                .WithTcpServer(Endpoint.Host, port)
                .WithClientId($"{BrokerSession.ServerClientId}-dynsec-{Environment.MachineName}-{Environment.ProcessId}")
                .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
                .WithCleanStart(true)
                .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
                .WithTimeout(CommandTimeout)
                .WithCredentials(_options.BrokerUsername, _options.BrokerPassword);
            if (Endpoint.Scheme is "mqtts" or "ssl")
            {
                builder.WithTlsOptions(tls => tls.UseTls().WithTargetHost(Endpoint.Host));
            }

            var connected = await _client.ConnectAsync(builder.Build(), cancellationToken).ConfigureAwait(false);
            if (connected.ResultCode != MqttClientConnectResultCode.Success)
            {
                throw new BrokerAdminException($"the broker at {Endpoint} refused the dynamic-security administrator ({_options.BrokerUsername}): {connected.ResultCode} {connected.ReasonString}");
            }

            var granted = await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(ResponseTopic, MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken).ConfigureAwait(false);
            if (granted.Items.Any(item => (int)item.ResultCode > 2))
            {
                await _client.DisconnectAsync(new MqttClientDisconnectOptions(), cancellationToken).ConfigureAwait(false);
                throw new BrokerAdminException($"the broker at {Endpoint} refused user '{_options.BrokerUsername}' the subscription to {ResponseTopic}: give it the dynamic-security admin role (docs/operations.md)");
            }
        }
        finally
        {
            _connectLock.Release();
        }
    }

    private void CountErrors(int count)
    {
        Interlocked.Add(ref _errorCount, count);
        _errors.Add(count);
    }

    private static string NewBatchId()
    {
        Span<byte> bytes = stackalloc byte[6];
        RandomNumberGenerator.Fill(bytes);
        return Convert.ToHexString(bytes);
    }

    public void Dispose()
    {
        _stopping.Dispose();
        _client.Dispose();
        _connectLock.Dispose();
    }

    /// <summary>One command of a batch: its name, its fields, and the one error answer that is expected (not a failure).</summary>
    internal sealed record Command(string Name, Action<Utf8JsonWriter> Fields, string? Tolerated = null);

    /// <summary>The plugin's answer to one command: <see cref="Error"/> is null when it was carried out.</summary>
    internal sealed record CommandResult(string Command, string? Error)
    {
        /// <summary>The answer's <c>data</c> (a list, a client), when it has one.</summary>
        public JsonElement? Data { get; init; }
    }

    [LoggerMessage(EventId = 1500, Level = LogLevel.Information, Message = "Administering Mosquitto dynamic security at {Broker} as {User}")]
    private static partial void LogConnected(ILogger logger, Uri broker, string user);

    [LoggerMessage(EventId = 1501, Level = LogLevel.Error, Message = "Mosquitto dynamic security: could not {Action} device {DeviceId}: {Reason}")]
    private static partial void LogCommandFailed(ILogger logger, string action, string deviceId, string reason);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "Mosquitto dynamic security: {Command} unanswered (attempt {Attempt}), trying again: {Reason}")]
    private static partial void LogRetry(ILogger logger, string command, int attempt, string reason);

    [LoggerMessage(EventId = 1503, Level = LogLevel.Information, Message = "Mosquitto dynamic security: disabled {Count} client(s) whose access token expired without renewal")]
    private static partial void LogExpiredDisabled(ILogger logger, int count);

    [LoggerMessage(EventId = 1504, Level = LogLevel.Warning, Message = "Mosquitto dynamic security: the expiry sweep failed, trying again in a minute: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, string reason);
}

/// <summary>The broker did not carry out an administrator's command; the message says which and why (never a token).</summary>
internal sealed class BrokerAdminException : Exception
{
    public BrokerAdminException()
    {
    }

    public BrokerAdminException(string message) : base(message)
    {
    }

    public BrokerAdminException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
