using System.CommandLine;
using System.Globalization;
using Enroll.Cli.Infrastructure;
using Enroll.Device;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll device ...</c>: act as a device with a state folder.</summary>
internal static class DeviceCommand
{
    /// <summary>How messages name these commands: <c>enroll device</c>, or <c>enroll-agent</c> in the device agent.</summary>
    public static string Prefix { get; set; } = "enroll device";

    public static Command Create()
    {
        var command = new Command("device", "Act as a device: register, run the agent, show status");
        AddTo(command);
        return command;
    }

    /// <summary>
    /// Adds the device commands (register, run, send, upload, status, twin, report) under <paramref name="parent"/>:
    /// <c>enroll device</c> in the full tool, the root command of the device agent <c>enroll-agent</c>.
    /// </summary>
    public static void AddTo(Command parent)
    {
        parent.Subcommands.Add(Register());
        parent.Subcommands.Add(Run());
        parent.Subcommands.Add(Send());
        parent.Subcommands.Add(DeviceUploadCommand.Create());
        parent.Subcommands.Add(Status());
        parent.Subcommands.Add(DeviceManagementCommands.Twin());
        parent.Subcommands.Add(DeviceManagementCommands.Report());
    }

    /// <summary>Options every device command shares.</summary>
    internal sealed class DeviceOptions
    {
        public Option<string> Broker { get; } = CliOptions.Uri("--broker", "The broker, mqtt://HOST:PORT or mqtts://HOST:PORT", "mqtt://127.0.0.1:1883");

        public Option<string?> ClientId { get; } = new("--client-id") { Description = "The device's own identifier (serial number, MAC); remembered in the state folder" };

        public Option<string?> Token { get; } = new("--token") { Description = "A Provisioning Token; remembered in the state folder" };

        public Option<string?> TokenFile { get; } = new("--token-file")
        {
            Description = "Read the Provisioning Token from this file (written at manufacturing time; a missing file means no token); --token wins",
        };

        public Option<string?> Org { get; } = new("--org") { Description = "The organisation to join (default: the token's)" };

        public Option<string?> DesiredDeviceId { get; } = new("--desired-device-id") { Description = "Ask for this Device ID (granted when free)" };

        public Option<string?> Name { get; } = new("--name") { Description = "A human-friendly device name" };

        public Option<string> State { get; } = StateOption();

        public Option<string> AttemptTimeout { get; } = CliOptions.Duration("--attempt-timeout", "How long to wait for each answer", "10s");

        public Option<int> MaxAttempts { get; } = new("--max-attempts") { Description = "Attempts before giving up", DefaultValueFactory = _ => 8 };

        public Option<string> MaxBackoff { get; } = CliOptions.Duration("--max-backoff", "Longest wait between attempts", "60s");

        public Option<string> MqttVersion { get; } = new("--mqtt-version") { Description = "MQTT protocol version: 5 or 3.1.1", DefaultValueFactory = _ => "5" };

        public Option<string?> ServerKeys { get; } = new("--server-keys") { Description = "A JWKS file with the server's signing keys to trust (default: the keys the server publishes)" };

        public Option<string?> Ca { get; } = new("--ca") { Description = "PEM CA certificates the broker's TLS certificate must chain to (mqtts://)" };

        public Option<string?> Cert { get; } = new("--cert") { Description = "PEM client certificate (mTLS): registers without a token when the server trusts its CA" };

        public Option<string?> Key { get; } = new("--key") { Description = "PEM private key of --cert" };

        public Option<bool> Encrypt { get; } = new("--encrypt") { Description = "Encrypt requests end to end to the server's published key (JWE)" };

        public Option<int> OutboxMaxMessages { get; } = new("--outbox-max-messages")
        {
            Description = "Messages the outbox holds before a send is refused as full (exit code 4)",
            DefaultValueFactory = _ => 100_000,
        };

        public Option<long> OutboxMaxBytes { get; } = new("--outbox-max-bytes")
        {
            Description = "Payload bytes the outbox holds (a file to upload must fit) before a send is refused as full (exit code 4)",
            DefaultValueFactory = _ => 64L * 1024 * 1024,
        };

        public void AddTo(Command command)
        {
            OutboxMaxMessages.Validators.Add(result =>
            {
                if (result.Tokens.Count > 0 && int.TryParse(result.Tokens[0].Value, CultureInfo.InvariantCulture, out var n) && n < 1)
                {
                    result.AddError($"--outbox-max-messages: {n} is too small; the outbox must hold at least 1 message");
                }
            });

            foreach (var option in new Option[] { Broker, ClientId, Token, TokenFile, Org, DesiredDeviceId, Name, State, AttemptTimeout, MaxAttempts, MaxBackoff, MqttVersion, ServerKeys, Ca, Cert, Key, Encrypt, OutboxMaxMessages, OutboxMaxBytes })
            {
                command.Options.Add(option);
            }
        }

        /// <summary>
        /// Builds the device services from the command line, falling back to what the state folder remembers. Without
        /// <c>--verbose</c> a <paramref name="longRunning"/> agent logs warnings (one line each; with <c>--log-format json</c>,
        /// for a log shipper, information too: connected, registered, token refreshed); a one-shot command logs
        /// nothing, so that its failure is the one line the CLI contract promises.
        /// </summary>
        public async Task<ServiceProvider> BuildAsync(ParseResult parse, bool longRunning = false, IHostApplicationLifetime? lifetime = null, Action<EnrollDeviceOptions>? configure = null, string? logFormat = null, Uri? otlpEndpoint = null)
        {
            var statePath = parse.GetValue(State)!;
            var stored = await LoadStoredAsync(statePath);
            var clientId = parse.GetValue(ClientId) ?? stored?.ClientId
                ?? throw new CliUsageException($"--client-id is required: the state folder {Path.GetFullPath(statePath)} holds no device yet (after the first registration it remembers the client ID; --state chooses another folder)");
            var version = parse.GetValue(MqttVersion) switch
            {
                "5" or "5.0" => MqttProtocol.V500,
                "3.1.1" or "3" or "4" => MqttProtocol.V311,
                var other => throw new CliUsageException($"--mqtt-version must be 5 or 3.1.1, not '{other}'"),
            };

            var token = parse.GetValue(Token) ?? await ReadTokenFileAsync(parse.GetValue(TokenFile));
            var services = new ServiceCollection();
            var verbose = CliOptions.IsVerbose(parse);
            services.AddLogging(logging => logging
                .AddCliLogging(logFormat, verbose)
                .SetMinimumLevel(verbose ? LogLevel.Debug : !longRunning ? LogLevel.None : logFormat == "json" ? LogLevel.Information : LogLevel.Warning)
                .AddFilter("MQTTnet", LogLevel.Warning));
            services.AddMetrics();
            otlpEndpoint ??= Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") is { Length: > 0 } fromEnv && longRunning ? DeviceFlags.ParseOtlp(fromEnv) : null;
            if (otlpEndpoint is not null)
            {
                // The device library's meter to an OpenTelemetry collector; started with the agent's other hosted services.
                services.AddOpenTelemetry()
                    .ConfigureResource(resource => resource.AddService("enroll-device"))
                    .WithMetrics(metrics => metrics.AddMeter("Enroll.Device").AddOtlpExporter(exporter => exporter.Endpoint = otlpEndpoint));
            }

            services.AddEnrollDevice(o =>
            {
                o.Broker = parse.GetUri(Broker);
                o.ClientId = clientId;
                o.ProvisioningToken = token;
                o.OrgId = parse.GetValue(Org);
                o.DesiredDeviceId = parse.GetValue(DesiredDeviceId);
                o.DeviceName = parse.GetValue(Name);
                o.StatePath = statePath;
                o.AttemptTimeout = parse.GetDuration(AttemptTimeout);
                o.MaxAttempts = parse.GetValue(MaxAttempts);
                o.MaxBackoff = parse.GetDuration(MaxBackoff);
                o.ProtocolVersion = version;
                o.ServerKeysPath = parse.GetValue(ServerKeys);
                o.EncryptRequests = parse.GetValue(Encrypt);
                o.TlsCaFile = parse.GetValue(Ca);
                o.ClientCertificateFile = parse.GetValue(Cert);
                o.ClientKeyFile = parse.GetValue(Key);
                o.OutboxMaxMessages = parse.GetValue(OutboxMaxMessages);
                o.OutboxMaxBytes = parse.GetValue(OutboxMaxBytes);
                configure?.Invoke(o);
            });
            if (lifetime is not null)
            {
                // The library's agent stops "the host" after a permanent failure; here the host is `enroll device run`.
                services.AddSingleton(lifetime);
            }

            var provider = services.BuildServiceProvider();
            try
            {
                _ = provider.GetRequiredService<IOptions<EnrollDeviceOptions>>().Value;
            }
            catch (OptionsValidationException ex)
            {
                await provider.DisposeAsync();
                throw new CliUsageException(string.Join("; ", ex.Failures));
            }

            return provider;
        }
    }

    /// <summary>
    /// The Provisioning Token in <c>--token-file</c>: its first line, trimmed. A missing file is no token (a device that is
    /// registered needs none, and a factory reset may delete it); an empty or unreadable one is a usage error.
    /// </summary>
    private static async Task<string?> ReadTokenFileAsync(string? path)
    {
        if (path is null || !File.Exists(path))
        {
            return null;
        }

        string text;
        try
        {
            text = await File.ReadAllTextAsync(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliUsageException($"--token-file {path}: cannot read {Path.GetFullPath(path)}: {ex.Message}");
        }

        var token = text.Split('\n', 2)[0].Trim();
        return token.Length > 0 ? token : throw new CliUsageException($"--token-file {path}: {Path.GetFullPath(path)} is empty; write the Provisioning Token on its first line");
    }

    internal static Option<string> StateOption() => new("--state")
    {
        Description = "The device state folder (identity, tokens, outbox)",
        DefaultValueFactory = _ => "enroll-device",
    };

    internal static async Task<DeviceCredentials?> LoadStoredAsync(string statePath)
    {
        if (!File.Exists(Path.Combine(statePath, SqliteCredentialStore.FileName)))
        {
            return null;
        }

        await using var store = new SqliteCredentialStore(statePath);
        return await store.LoadAsync();
    }

    private static Command Register()
    {
        var options = new DeviceOptions();
        var json = CliOptions.Json();
        var timeout = CliOptions.Duration("--timeout", "How long to wait for an operator to approve", "10m");
        var command = new Command(
            "register",
            "Register this device (or reuse its stored identity) and print its Device ID. With a token that needs approval, print the operation ID and wait for an operator.");
        options.AddTo(command);
        command.Options.Add(timeout);
        command.Options.Add(json);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await RunDevice(output, async () =>
            {
                await using var provider = await options.BuildAsync(parse);
                var registration = provider.GetRequiredService<RegistrationService>();
                var limit = parse.GetDuration(timeout);
                using var progress = new ApprovalProgress(registration, output, TimeProvider.System);
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                deadline.CancelAfter(limit);
                DeviceIdentity identity;
                try
                {
                    identity = await registration.StartAsync(deadline.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    var status = registration.Status;
                    await registration.StopAsync(CancellationToken.None);
                    return status.State == DeviceState.Pending
                        ? output.Fail(ExitCodes.Unreachable, $"operation {status.OperationId} is still waiting for an operator after {Durations.Format(limit)}; run the command again to keep waiting (the operation is remembered)")
                        : output.Fail(ExitCodes.Unreachable, $"registration did not finish within {Durations.Format(limit)} ({status.State}{(status.Failure is null ? string.Empty : ": " + status.Failure)})");
                }

                await registration.StopAsync(cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(
                        new RegisterOutput
                        {
                            DeviceId = identity.DeviceId,
                            ClientId = identity.ClientId,
                            ExpiresAt = identity.AccessTokenExpiresAt,
                            RegistrationTokenExpiresAt = identity.RegistrationTokenExpiresAt,
                            RegistrationSkipped = identity.RegistrationSkipped,
                        },
                        CliJsonContext.Default.RegisterOutput);
                }
                else if (identity.RegistrationSkipped)
                {
                    output.Line($"Already registered as {identity.DeviceId} (client {identity.ClientId}); the stored access token is valid until {Format(identity.AccessTokenExpiresAt)}, so no request was sent.");
                }
                else
                {
                    output.Line($"Registered as {identity.DeviceId} (client {identity.ClientId}). Access token valid until {Format(identity.AccessTokenExpiresAt)}.");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Run()
    {
        var options = new DeviceOptions();
        var logFormat = DeviceFlags.LogFormatOption();
        var otlpEndpoint = DeviceFlags.OtlpEndpointOption();
        var commandHandler = new Option<string?>("--command-handler")
        {
            Description = "Hand every command to PROGRAM: the command name is its argument, the payload JSON its standard input; exit 0 succeeds with standard output as the result, any other exit fails with standard error as the message; killed when the command expires",
        };
        var command = new Command(
            "run",
            "Run the device agent until stopped (Ctrl+C): register, then keep tokens fresh, re-provisioning when needed, keep the twin in step and run commands; ends with exit code 3 when the device is refused for good")
        {
            commandHandler,
            logFormat,
            otlpEndpoint,
        };
        options.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await RunDevice(output, async () =>
            {
                // One agent per state folder: two would share its tokens and outbox and deliver the same messages twice.
                // The device library's lock is the guard (a race ends in its StateFolderInUseException below); this says
                // who holds the folder in one line before anything starts.
                var statePath = Path.GetFullPath(parse.GetValue(options.State)!);
                if (DeviceStateReader.ReadHealth(statePath) is { } health && DeviceStateReader.IsAlive(health))
                {
                    return output.Fail(ExitCodes.Refused, $"the state folder {statePath} is in use by process {health.Pid} (a running device agent); stop it first, or give this one another --state");
                }

                var handlerProgram = parse.GetValue(commandHandler) is { } program ? new CommandHandlerProgram(ResolveProgram(program)) : null;
                using var lifetime = new AgentLifetime(cancellationToken);
                await using var provider = await options.BuildAsync(parse, longRunning: true, lifetime, logFormat: parse.GetValue(logFormat), otlpEndpoint: DeviceFlags.ParseOtlp(parse.GetValue(otlpEndpoint)));
                if (handlerProgram is not null)
                {
                    provider.GetRequiredService<DeviceCommands>().OnAnyCommand(handlerProgram.RunAsync);
                }

                var registration = provider.GetRequiredService<RegistrationService>();
                registration.StatusChanged += (_, e) =>
                {
                    if (e.Previous.State != e.Current.State || e.Previous.OperationId != e.Current.OperationId)
                    {
                        output.Error.WriteLine(DescribeStatus(e.Current));
                    }
                };
                var agents = provider.GetServices<IHostedService>().ToList();
                foreach (var agent in agents)
                {
                    await agent.StartAsync(cancellationToken);
                }

                output.Error.WriteLine("Device agent running; press Ctrl+C to stop.");
                var systemd = new Microsoft.Extensions.Hosting.Systemd.SystemdNotifier();
                if (systemd.IsEnabled)
                {
                    // Type=notify: started means registered or registering, with every agent loop running.
                    systemd.Notify(Microsoft.Extensions.Hosting.Systemd.ServiceState.Ready);
                }

                // Until Ctrl+C, the library asks to stop, or a background loop ends by itself (the agent gives up
                // after a permanent failure: it stops keeping the device registered, so the process must not go on).
                var loops = agents.OfType<BackgroundService>().Select(a => a.ExecuteTask).OfType<Task>().ToList();
                var stopped = Task.Delay(Timeout.Infinite, lifetime.ApplicationStopping).ContinueWith(_ => { }, TaskScheduler.Default);
                var ended = await Task.WhenAny([stopped, .. loops]);
                var interrupted = cancellationToken.IsCancellationRequested;
                var last = registration.Status;
                if (systemd.IsEnabled)
                {
                    systemd.Notify(Microsoft.Extensions.Hosting.Systemd.ServiceState.Stopping);
                }

                foreach (var agent in Enumerable.Reverse(agents))
                {
                    await agent.StopAsync(CancellationToken.None);
                }

                if (interrupted)
                {
                    return ExitCodes.Ok;
                }

                if (ended.IsFaulted && ended.Exception?.InnerException is { } crash)
                {
                    return output.Fail(crash);
                }

                if (registration.TerminalFailure is StateFolderInUseException inUse)
                {
                    return output.Fail(inUse);
                }

                return last.State == DeviceState.Failed
                    ? output.Fail(ExitCodes.Refused, $"the device agent stopped for good: {last.Failure}. It will not recover by itself: fix the cause and start it again (a revoked device, or one whose token was refused, needs a valid Provisioning Token: {Prefix} run --token TOKEN)")
                    : output.Fail(ExitCodes.Failure, $"the device agent stopped by itself ({DescribeStatus(last)}); start it again, with --verbose to see why");
            });
        });
        return command;
    }

    /// <summary>
    /// The <c>--command-handler</c> program: a path is checked now (so a typo is exit 2 rather than a failed command later)
    /// and made absolute; a bare name that is no file here is looked up on PATH when it runs.
    /// </summary>
    private static string ResolveProgram(string program)
    {
        if (!program.Contains(Path.DirectorySeparatorChar, StringComparison.Ordinal) && !File.Exists(program))
        {
            return program;
        }

        var path = Path.GetFullPath(program);
        if (!File.Exists(path))
        {
            throw new CliUsageException($"--command-handler {program}: {path} does not exist");
        }

        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) == 0)
        {
            throw new CliUsageException($"--command-handler {program}: {path} is not executable (chmod +x it)");
        }

        return path;
    }

    /// <summary>
    /// The <see cref="IHostApplicationLifetime"/> of <c>enroll device run</c>: stopping means Ctrl+C, or a library
    /// component asking the host to stop (the agent after a permanent failure).
    /// </summary>
    private sealed class AgentLifetime : IHostApplicationLifetime, IDisposable
    {
        private readonly CancellationTokenSource _stopping;
        private readonly CancellationTokenSource _started = new();
        private readonly CancellationTokenSource _stoppedSource = new();

        public AgentLifetime(CancellationToken interrupted)
        {
            _stopping = CancellationTokenSource.CreateLinkedTokenSource(interrupted);
            _started.Cancel();
        }

        public CancellationToken ApplicationStarted => _started.Token;

        public CancellationToken ApplicationStopping => _stopping.Token;

        public CancellationToken ApplicationStopped => _stoppedSource.Token;

        public void StopApplication() => _stopping.Cancel();

        public void Dispose()
        {
            _stoppedSource.Cancel();
            _stopping.Dispose();
            _started.Dispose();
            _stoppedSource.Dispose();
        }
    }

    private static Command Send()
    {
        var options = new DeviceOptions();
        var stream = new Option<string>("--stream") { Description = "The stream to send on (for example telemetry or logs/kernel)", Required = true };
        var data = new Option<string>("--data") { Description = "The payload: JSON or text, or @FILE to read it from a file", Required = true };
        var contentType = new Option<string>("--content-type") { Description = "The payload's MIME type", DefaultValueFactory = _ => "application/json" };
        var properties = new Option<string[]>("--property") { Description = "A custom property NAME=VALUE (repeatable)", AllowMultipleArgumentsPerToken = false };
        var repeat = new Option<int>("--repeat") { Description = "Send the payload this many times; {n} in it becomes the index", DefaultValueFactory = _ => 1 };
        var concurrency = new Option<int>("--concurrency") { Description = "Concurrent senders for --repeat", DefaultValueFactory = _ => 1 };
        var printIds = new Option<bool>("--print-ids") { Description = "Print 'INDEX MESSAGE_ID' for every send the moment it is durable" };
        var deliver = new Option<bool>("--deliver") { Description = "Also connect and deliver, and return only when the outbox is drained" };
        var json = CliOptions.Json();
        var command = new Command("send", "Store a message durably in the device's outbox and return (the agent, or --deliver, sends it)") { stream, data, contentType, properties, repeat, concurrency, printIds, deliver, json };
        options.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await RunDevice(output, async () =>
            {
                var text = parse.GetValue(data)!;
                var template = await ReadDataAsync(text, cancellationToken);
                var custom = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var pair in parse.GetValue(properties) ?? [])
                {
                    var equals = pair.IndexOf('=', StringComparison.Ordinal);
                    if (equals <= 0)
                    {
                        throw new CliUsageException($"--property must be NAME=VALUE, not '{pair}'");
                    }

                    custom[pair[..equals]] = pair[(equals + 1)..];
                }

                await using var provider = await options.BuildAsync(parse);
                var outbox = provider.GetRequiredService<DeviceOutbox>();
                var hosted = parse.GetValue(deliver) ? provider.GetServices<IHostedService>().ToList() : [];
                var publisher = provider.GetRequiredService<OutboxPublisher>();
                foreach (var service in hosted)
                {
                    await service.StartAsync(cancellationToken);
                }

                var messageProperties = new MessageProperties { ContentType = parse.GetValue(contentType), Custom = custom.Count == 0 ? null : custom };
                var count = Math.Max(1, parse.GetValue(repeat));
                var next = -1;
                var ids = new string[count];
                var lines = new Lock();
                async Task SenderAsync()
                {
                    int index;
                    while ((index = Interlocked.Increment(ref next)) < count)
                    {
                        var payload = System.Text.Encoding.UTF8.GetBytes(template.Replace("{n}", index.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal));
                        ids[index] = await outbox.SendAsync(parse.GetValue(stream)!, payload, messageProperties, cancellationToken);
                        if (parse.GetValue(printIds))
                        {
                            lock (lines)
                            {
                                output.Out.WriteLine($"{index} {ids[index]}");
                                output.Out.Flush();
                            }
                        }
                    }
                }

                await Task.WhenAll(Enumerable.Range(0, Math.Max(1, parse.GetValue(concurrency))).Select(_ => Task.Run(SenderAsync, cancellationToken)));
                if (hosted.Count > 0)
                {
                    await WaitUntilDeliveredAsync(outbox, publisher, cancellationToken);
                    foreach (var service in Enumerable.Reverse(hosted))
                    {
                        await service.StopAsync(CancellationToken.None);
                    }
                }

                if (parse.GetValue(json))
                {
                    output.Line(System.Text.Json.JsonSerializer.Serialize(ids, CliJsonContext.Default.StringArray));
                }
                else if (!parse.GetValue(printIds))
                {
                    output.Line(count == 1 ? ids[0] : $"Stored {count} messages ({ids[0]} ... {ids[^1]}).");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    /// <summary>
    /// Waits until the outbox is empty: every stored message acknowledged. The publisher's <c>Drained</c> only wakes the
    /// check, since it may have fired for the empty outbox it started with, before the sends stored anything.
    /// </summary>
    private static async Task WaitUntilDeliveredAsync(DeviceOutbox outbox, OutboxPublisher publisher, CancellationToken cancellationToken)
    {
        while (true)
        {
            var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnDrained() => drained.TrySetResult();
            publisher.Drained += OnDrained;
            try
            {
                if (outbox.GetStatistics().Depth == 0)
                {
                    return;
                }

                await drained.Task.WaitAsync(cancellationToken);
            }
            finally
            {
                publisher.Drained -= OnDrained;
            }
        }
    }

    /// <summary>The payload of <c>--data</c>: the text itself, or with <c>@FILE</c> the file's content, byte for byte as text.</summary>
    private static async Task<string> ReadDataAsync(string data, CancellationToken cancellationToken)
    {
        if (!data.StartsWith('@'))
        {
            return data;
        }

        var path = data[1..];
        try
        {
            return await File.ReadAllTextAsync(path, cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new CliUsageException($"--data {data}: cannot read {(path.Length == 0 ? "an empty file name" : Path.GetFullPath(path))}: {ex.Message}");
        }
    }

    internal static string DescribeStatus(DeviceStatus status) => status.State switch
    {
        DeviceState.Registered => $"registered as {status.DeviceId}; access token valid until {(status.AccessTokenExpiresAt is { } a ? Format(a) : "-")}" +
            (status.RegistrationTokenExpiresAt is { } r ? $", Registration Token until {Format(r)}" : string.Empty),
        DeviceState.Pending => $"pending: operation {status.OperationId} waits for an operator (enroll ops approve {status.OperationId})",
        DeviceState.Failed => $"failed: {status.Failure}",
        DeviceState.WaitingToRetry => $"retrying in {status.RetryIn?.TotalSeconds:0.#} s: {status.Failure}",
        _ => status.State.ToString().ToLowerInvariant(),
    };

    private static Command Status()
    {
        var state = StateOption();
        var json = CliOptions.Json();
        var command = new Command(
            "status",
            "Show the device's identity, tokens, outbox and agent health from its state folder, changing nothing (exit code 5 when not registered, 6 when a state database is damaged)")
        {
            state, json,
        };
        command.SetAction(parse =>
        {
            var output = new Output(parse);
            var statePath = Path.GetFullPath(parse.GetValue(state)!);
            var (stored, credentialsDamage) = DeviceStateReader.ReadCredentials(statePath);
            var (box, outboxDamage) = DeviceStateReader.ReadOutbox(statePath);
            var health = DeviceStateReader.ReadHealth(statePath);
            DamagedFile[] damaged = [.. new[] { credentialsDamage, outboxDamage }.OfType<DamagedFile>()];

            var now = TimeProvider.System.GetUtcNow();
            var accessValid = stored?.HasValidAccessToken(now, TimeSpan.Zero) == true;
            var stateName = stored switch
            {
                null when credentialsDamage is not null => "damaged",
                null => "unprovisioned",
                { DeviceId: not null } when accessValid => "registered",
                { DeviceId: not null } => "registration expired",
                { PendingOperationId: not null } => "pending",
                _ => "unprovisioned",
            };
            var agent = new AgentStatusOutput
            {
                Running = health is not null && DeviceStateReader.IsAlive(health),
                Pid = health?.Pid,
                UpdatedAt = health?.UpdatedAt,
                Faults = [.. (health?.Faults ?? []).Select(f => new FaultOutput
                {
                    Component = f.Component,
                    Kind = DeviceStateReader.SnakeCase(f.Kind),
                    Message = f.Message,
                    Since = f.Since,
                    Occurrences = f.Occurrences,
                })],
            };
            var result = new StatusOutput
            {
                State = stateName,
                StatePath = statePath,
                ClientId = stored?.ClientId,
                DeviceId = stored?.DeviceId,
                OrgId = stored?.OrgId,
                AccessTokenExpiresAt = stored?.AccessTokenExpiresAt,
                AccessTokenValid = accessValid,
                RegistrationTokenExpiresAt = stored?.RegistrationTokenExpiresAt,
                PendingOperationId = stored?.PendingOperationId,
                RegisteredAt = stored?.RegisteredAt,
                Outbox = box is null ? null
                    : new OutboxStatusOutput { Depth = box.Depth, Bytes = box.Bytes, OldestAgeSeconds = box.OldestAge?.TotalSeconds, Sent = box.Sent, Acknowledged = box.Acknowledged, Dropped = box.Dropped, Quarantined = box.Quarantined, Transfers = box.Transfers },
                Agent = agent,
                Damaged = damaged.Length == 0 ? null : [.. damaged.Select(d => new DamagedFileOutput { File = d.File, Error = d.Error })],
            };

            if (parse.GetValue(json))
            {
                output.Json(result, CliJsonContext.Default.StatusOutput);
            }
            else
            {
                PrintStatus(output, result, stored is not null, now);
            }

            if (damaged.Length > 0)
            {
                return output.Fail(
                    ExitCodes.Damaged,
                    $"the state folder {statePath} is damaged: {string.Join("; ", damaged.Select(d => $"{d.File} is {d.Error}"))}. Status changed nothing; the agent moves a damaged database aside when it next starts (losing what it held), or restore it from a backup");
            }

            return stateName switch
            {
                "registered" => ExitCodes.Ok,
                "pending" => output.Fail(ExitCodes.NotRegistered, $"the device is not registered yet: operation {result.PendingOperationId} waits for an operator (enroll ops approve {result.PendingOperationId})"),
                "registration expired" => output.Fail(ExitCodes.NotRegistered, $"the device's access token expired {(result.AccessTokenExpiresAt is { } at ? Format(at) : string.Empty)}; the agent ({Prefix} run) registers it again"),
                _ => output.Fail(ExitCodes.NotRegistered, $"no device is registered in {statePath}: register one with {Prefix} register --client-id ID --token TOKEN --state {parse.GetValue(state)}"),
            };
        });
        return command;
    }

    private static void PrintStatus(Output output, StatusOutput result, bool identity, DateTimeOffset now)
    {
        output.Line($"State:               {result.State}");
        output.Line($"State folder:        {result.StatePath}");
        if (identity)
        {
            output.Line($"Client ID:           {result.ClientId}");
            output.Line($"Device ID:           {result.DeviceId ?? "-"}");
            output.Line($"Organisation:        {result.OrgId ?? "-"}");
            output.Line($"Access token:        {Describe(result.AccessTokenExpiresAt, now)}");
            output.Line($"Registration token:  {Describe(result.RegistrationTokenExpiresAt, now)}");
            if (result.PendingOperationId is not null)
            {
                output.Line($"Pending operation:   {result.PendingOperationId}");
            }

            if (result.RegisteredAt is { } at)
            {
                output.Line($"Last registered:     {Format(at)}");
            }
        }

        if (result.Outbox is { } outbox)
        {
            output.Line($"Outbox:              {outbox.Depth} waiting ({outbox.Bytes} bytes){(outbox.OldestAgeSeconds is { } age ? $", oldest {age:0} s" : string.Empty)}; ever {outbox.Sent} sent, {outbox.Acknowledged} acknowledged, {outbox.Dropped} dropped, {outbox.Quarantined} quarantined{(outbox.Transfers > 0 ? $"; {outbox.Transfers} transfer(s) under way" : string.Empty)}");
        }

        var agent = result.Agent;
        output.Line($"Agent:               {(agent.Running ? $"running (pid {agent.Pid})" : agent.Pid is { } pid ? $"not running (last pid {pid}, {Format(agent.UpdatedAt!.Value)})" : "not running")}");
        foreach (var fault in agent.Faults)
        {
            output.Line($"  {(agent.Running ? "fault" : "was")}  {fault.Component}: {fault.Kind} — {fault.Message} (since {Format(fault.Since)}, {fault.Occurrences} {(fault.Occurrences == 1 ? "time" : "times")})");
        }

        foreach (var damage in result.Damaged ?? [])
        {
            output.Line($"Damaged:             {damage.File}: {damage.Error}");
        }
    }

    /// <summary>Runs a device action, turning any failure into one line on standard error and an exit code (<see cref="Failures"/>).</summary>
    internal static async Task<int> RunDevice(Output output, Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return output.Fail(ex);
        }
    }

    internal static string Format(DateTimeOffset value) => value.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture);

    private static string Describe(DateTimeOffset? expires, DateTimeOffset now)
    {
        if (expires is not { } at)
        {
            return "none";
        }

        var left = at - now;
        return left > TimeSpan.Zero
            ? $"valid until {Format(at)} ({(left.TotalHours >= 48 ? $"{left.TotalDays:0} days" : left.TotalMinutes >= 120 ? $"{left.TotalHours:0} h" : $"{Math.Max(1, left.TotalMinutes):0} min")} left)"
            : $"expired {Format(at)}";
    }
}

/// <summary>The command line or the configuration it produced is invalid.</summary>
internal sealed class CliUsageException(string message) : Exception(message);
