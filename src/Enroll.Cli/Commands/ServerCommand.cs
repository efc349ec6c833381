using System.CommandLine;
using System.Net.Sockets;
using Enroll.Cli.Infrastructure;
using Enroll.Server;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll server</c>: the embedded broker, handlers, registry and HTTP API in one process.</summary>
internal static class ServerCommand
{
    public static Command Create()
    {
        var mqttPort = CliOptions.Port("--mqtt-port", "MQTT port of the embedded broker (0 picks a free port)", 1883);
        var httpPort = CliOptions.Port("--http-port", "Port of the HTTP API (0 picks a free port)", 8080);
        var dataDir = new Option<string>("--data-dir") { Description = "Folder for the SQLite registry, signing keys and admin key", DefaultValueFactory = _ => "enroll-data" };
        var bind = new Option<string>("--bind") { Description = "Address to listen on: an IP address, localhost, or * for all", DefaultValueFactory = _ => "127.0.0.1" };
        var open = new Option<bool>("--open-registration") { Description = "Accept registrations without any credential (trusted networks only)" };
        var broker = new Option<string?>("--broker") { Description = "Use an external MQTT 5 broker (mqtt://host:port) instead of the embedded one; see docs/operations.md" };
        broker.Validators.Add(result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : null;
            if (text is not null && (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "mqtts" or "tcp" or "ssl")))
            {
                result.AddError($"--broker: '{text}' is not an mqtt:// or mqtts:// address");
            }
        });
        var brokerUser = new Option<string>("--broker-username") { Description = "The server's user on the external broker", DefaultValueFactory = _ => "enroll-server" };
        var brokerPassword = new Option<string?>("--broker-password") { Description = "The server's password on the external broker (or set ENROLL_BROKER_PASSWORD)" };
        var requireEncryption = new Option<bool>("--require-encryption") { Description = "Refuse requests that are not end-to-end encrypted (JWE) to the server's key" };
        var accessLifetime = CliOptions.Duration("--access-token-lifetime", "Lifetime of access tokens", "24h");
        var registrationLifetime = CliOptions.Duration("--registration-token-lifetime", "Default lifetime of Registration Tokens", "30d");
        var operationLifetime = CliOptions.Duration("--operation-lifetime", "How long a provisioning operation may stay pending", "24h");
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate (chain) for MQTT over TLS and HTTPS; needs --tls-key" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert (owner-only file)" };
        var mqttsPort = CliOptions.Port("--mqtts-port", "MQTT-over-TLS port (0 picks a free port)", 8883);
        var httpsPort = CliOptions.Port("--https-port", "HTTPS port (0 picks a free port)", 8443);
        var noPlaintext = new Option<bool>("--no-plaintext") { Description = "Serve TLS only: no plain MQTT or HTTP listener" };
        var clientCa = new Option<string?>("--client-ca") { Description = "PEM CA certificates for client-certificate (mTLS) registration without a Provisioning Token" };
        var relaxed = new Option<bool>("--relaxed-durability")
        {
            Description = "Acknowledge registry writes (and device messages) before they reach the disk: survives a crash of the server, not a power loss",
        };
        var brokerHooks = new Option<bool>("--broker-hooks")
        {
            Description = "Serve EMQX and VerneMQ authentication/authorization webhooks under /broker (key in broker-hooks.key in the data folder)",
        };
        var database = new Option<string?>("--database")
        {
            Description = "Keep the registry in PostgreSQL: an Npgsql connection string without a password (\"Host=db;Database=enroll;Username=enroll\"); the password comes from ENROLL_DATABASE_PASSWORD or a passfile",
        };
        var keyEncryptionKeyFile = new Option<string?>("--key-encryption-key-file")
        {
            Description = "The key-encryption key (base64 of 32 random bytes, owner-only file) the server keys are sealed under in the registry; the same for every instance, required with --database (or ENROLL_KEY_ENCRYPTION_KEY)",
        };
        var brokerClientId = new Option<string?>("--broker-client-id") { Description = "This instance's stable client ID stem on the external broker ({id}-requests, {id}-ingest); one per instance" };
        var brokerSessionExpiry = CliOptions.Duration("--broker-session-expiry", "How long the external broker queues device messages for this instance while it is away", "1d");
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Least severe log level to print", DefaultValueFactory = _ => LogLevel.Information };
        var brokerDynsec = new Option<bool>("--broker-dynsec")
        {
            Description = "Administer the external Mosquitto's dynamic-security plugin: devices sign in with their access tokens, revoked ones are disconnected (needs --broker; docs/operations.md)",
        };
        var brokerEmqxApi = new Option<string?>("--broker-emqx-api")
        {
            Description = "End revoked devices' sessions through this EMQX 5 REST API (http://emqx:18083), with an API key as key:secret in ENROLL_BROKER_ADMIN_KEY (needs --broker; docs/operations.md)",
        };

        var filesDir = new Option<string?>("--files-dir") { Description = "Folder of the file store (transfers being received, stored files); share it between instances. Default: {data-dir}/files" };
        var maxConnections = new Option<int?>("--max-connections") { Description = "Most broker connections open at once (embedded broker). Default: 80 % of the open-file limit (ulimit -n), at least 128 below it" };
        var maxMessageSize = new Option<string>("--max-message-size") { Description = "Largest message a device may send in chunks, as sent and decompressed (for example 16MiB; 1KiB to 256MiB)", DefaultValueFactory = _ => "16MiB" };
        var maxFileSize = new Option<string>("--max-file-size") { Description = "Largest file a device may send (for example 1GiB; 1KiB to 1TiB)", DefaultValueFactory = _ => "1GiB" };
        var deviceFileQuota = new Option<string>("--device-file-quota") { Description = "Bytes of files one device may have on the server, stored plus being sent (for example 5GiB)", DefaultValueFactory = _ => "5GiB" };
        var incompleteExpiry = CliOptions.Duration("--incomplete-transfer-expiry", "How long a transfer that receives no chunk is kept before its staged chunks are removed", "24h");
        foreach (var size in new[] { maxMessageSize, maxFileSize, deviceFileQuota })
        {
            var name = size.Name;
            size.Validators.Add(result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : null;
                if (text is not null && !TryParseSize(text, out _))
                {
                    result.AddError($"{name}: '{text}' is not a size; give bytes, or a number with KiB, MiB, GiB or TiB (for example 16MiB)");
                }
            });
        }

        var command = new Command("server", "Run an Enroll server: embedded MQTT broker, request handlers, SQLite registry, HTTP API and web console")
        {
            mqttPort, httpPort, dataDir, bind, tlsCert, tlsKey, mqttsPort, httpsPort, noPlaintext, clientCa, broker, brokerUser, brokerPassword, open, requireEncryption, accessLifetime, registrationLifetime, operationLifetime, relaxed, database, logLevel, brokerHooks, brokerClientId, brokerSessionExpiry, brokerDynsec, brokerEmqxApi, keyEncryptionKeyFile,
            filesDir, maxMessageSize, maxFileSize, deviceFileQuota, incompleteExpiry, maxConnections,
        };

        // Issue 15: each part adds its flags in ServerFlags.
        ServerFlags.AddOperators(command);

        ServerFlags.AddObservability(command);

        ServerFlags.AddConsole(command);

        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var options = new EnrollServerOptions
            {
                MqttPort = parse.GetValue(mqttPort),
                HttpPort = parse.GetValue(httpPort),
                DataDirectory = parse.GetValue(dataDir)!,
                Bind = parse.GetValue(bind)!,
                OpenRegistration = parse.GetValue(open),
                RequireEncryption = parse.GetValue(requireEncryption),
                ExternalBroker = parse.GetValue(broker) is { } external ? new Uri(external) : null,
                BrokerUsername = parse.GetValue(brokerUser)!,
                BrokerPassword = parse.GetValue(brokerPassword) ?? Environment.GetEnvironmentVariable("ENROLL_BROKER_PASSWORD"),
                AccessTokenLifetime = parse.GetDuration(accessLifetime),
                RegistrationTokenLifetime = parse.GetDuration(registrationLifetime),
                OperationLifetime = parse.GetDuration(operationLifetime),
                DurableCommits = !parse.GetValue(relaxed),
                Database = parse.GetValue(database),
                KeyEncryptionKeyFile = parse.GetValue(keyEncryptionKeyFile),
                TlsCertificateFile = parse.GetValue(tlsCert),
                TlsKeyFile = parse.GetValue(tlsKey),
                MqttTlsPort = parse.GetValue(mqttsPort),
                HttpsPort = parse.GetValue(httpsPort),
                NoPlaintext = parse.GetValue(noPlaintext),
                ClientCaFile = parse.GetValue(clientCa),
                BrokerHooks = parse.GetValue(brokerHooks),
                BrokerClientId = parse.GetValue(brokerClientId),
                BrokerSessionExpiry = parse.GetDuration(brokerSessionExpiry),
                BrokerAdmin = parse.GetValue(brokerDynsec) ? BrokerAdmin.MosquittoDynamicSecurity
                    : parse.GetValue(brokerEmqxApi) is not null ? BrokerAdmin.EmqxApi
                    : BrokerAdmin.None,
                BrokerAdminUrl = Uri.TryCreate(parse.GetValue(brokerEmqxApi), UriKind.Absolute, out var emqxApi) ? emqxApi : null,
                BrokerAdminKey = Environment.GetEnvironmentVariable("ENROLL_BROKER_ADMIN_KEY"),
                FilesDirectory = parse.GetValue(filesDir),
                MaxMessageBytes = ParseSize(parse.GetValue(maxMessageSize)),
                MaxFileBytes = ParseSize(parse.GetValue(maxFileSize)),
                DeviceFileQuotaBytes = ParseSize(parse.GetValue(deviceFileQuota)),
                IncompleteTransferExpiry = parse.GetDuration(incompleteExpiry),
                MaxConnections = parse.GetValue(maxConnections),
            };
            // Issue 15, operators: set options from flags here.
            ServerFlags.ApplyOperators(parse, options);

            // Issue 15, observability: set options from flags here.
            ServerFlags.ApplyObservability(parse, options);

            // Issue 15, console API: set options from flags here.
            ServerFlags.ApplyConsole(parse, options);

            var level = parse.GetValue(logLevel);
            var verbose = CliOptions.IsVerbose(parse);

            EnrollServerHost host;
            try
            {
                host = await EnrollServerHost.StartAsync(
                    options,
                    logging => logging.AddCliLogging(parse.GetValue(ServerFlags.LogFormat), verbose, standardError: false).SetMinimumLevel(verbose ? LogLevel.Debug : level).AddFilter("Microsoft", LogLevel.Warning),
                    cancellationToken: cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                var (code, message) = ClassifyStartFailure(ex);
                output.Error.WriteLine($"enroll: cannot start the server: {message.ReplaceLineEndings(" ")}");
                if (verbose)
                {
                    output.Error.WriteLine(ex.ToString());
                }

                return code;
            }

            await using (host)
            {
                PrintBanner(output, host, options);
                try
                {
                    await host.WaitForShutdownAsync(cancellationToken);
                }
                catch (OperationCanceledException)
                {
                }
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>
    /// Why the server did not start, with its exit code: 3 when another process holds a port or the data folder (the
    /// same command cannot work until it lets go), 2 for a configuration the server refuses (options, TLS files, the
    /// data folder's permissions), else as <see cref="Failures"/> says.
    /// </summary>
    internal static (int Code, string Message) ClassifyStartFailure(Exception ex)
    {
        if (ex is ServerStartException start)
        {
            return (start.Problem == ServerStartProblem.InvalidOptions ? ExitCodes.Usage : ExitCodes.Refused, start.Message);
        }

        for (var inner = ex; inner is not null; inner = inner.InnerException)
        {
            if (inner is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } || inner.GetType().Name == "AddressInUseException")
            {
                return (ExitCodes.Refused, $"{ex.Message.TrimEnd('.')} (another process uses the port: stop it, or choose another with --mqtt-port / --http-port)");
            }
        }

        return ex switch
        {
            OptionsValidationException options => (ExitCodes.Usage, string.Join("; ", options.Failures)),
            FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException or ArgumentException or InvalidOperationException
                or System.Security.Cryptography.CryptographicException => (ExitCodes.Usage, ex.Message),
            _ => Failures.Classify(ex),
        };
    }

    /// <summary>A size as a person writes it: bytes, or a whole or decimal number of KiB, MiB, GiB or TiB (<c>16MiB</c>, <c>1.5GiB</c>).</summary>
    internal static bool TryParseSize(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var units = new (string Suffix, long Factor)[] { ("TiB", 1L << 40), ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("B", 1) };
        var trimmed = text.Trim();
        var factor = 1L;
        foreach (var (suffix, unit) in units)
        {
            if (trimmed.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                trimmed = trimmed[..^suffix.Length].TrimEnd();
                factor = unit;
                break;
            }
        }

        if (!decimal.TryParse(trimmed, System.Globalization.NumberStyles.AllowDecimalPoint, System.Globalization.CultureInfo.InvariantCulture, out var number) || number * factor > long.MaxValue)
        {
            return false;
        }

        bytes = (long)(number * factor);
        return true;
    }

    private static long ParseSize(string? text) => TryParseSize(text, out var bytes) ? bytes : throw new ArgumentException($"not a size: '{text}'", nameof(text));

    private static void PrintBanner(Output output, EnrollServerHost host, EnrollServerOptions options)
    {
        var mqtt = host.MqttEndpoint.ToString().TrimEnd('/');
        var http = host.HttpEndpoint.ToString().TrimEnd('/');
        output.Line(string.Empty);
        output.Line("Enroll server is running.");
        output.Line(string.Empty);
        output.Line($"  MQTT broker   {mqtt}   ({(options.ExternalBroker is null ? "embedded" : $"external, as user {options.BrokerUsername}")})");
        if (host.MqttTlsEndpoint is { } mqttTls && host.MqttTlsEndpoint != host.MqttEndpoint)
        {
            output.Line($"  MQTT over TLS {mqttTls.ToString().TrimEnd('/')}{(options.ClientCaFile is null ? string.Empty : "   (client certificates from --client-ca register without a token)")}");
        }

        output.Line($"  HTTP API      {http}   (JWKS at {http}/.well-known/jwks.json)");
        if (host.HttpsEndpoint is { } https && host.HttpsEndpoint != host.HttpEndpoint)
        {
            output.Line($"  HTTPS API     {https.ToString().TrimEnd('/')}");
        }

        // The console is served on every HTTP listener; TLS is named first when there is one (its cookie is Secure).
        output.Line($"  Web console   {(host.HttpsEndpoint ?? host.HttpEndpoint).ToString().TrimEnd('/')}/   (sign in with the admin key or an operator's key)");
        output.Line(options.Database is { } database
            ? $"  Registry      PostgreSQL {PostgresTarget(database)}"
            : $"  Data folder   {host.DataDirectory}   (registry.db, keys/, admin.key)");
        if (options.Database is not null)
        {
            output.Line($"  Data folder   {host.DataDirectory}   (keys/, admin.key)");
        }

        output.Line($"  Admin key     {host.AdminKeyPath}   (the enroll CLI reads it from here)");
        if (host.FirstStart)
        {
            output.Line(string.Empty);
            output.Line("  First start: created a new ES256 signing key and admin key (owner-only files).");
        }

        if (options.OpenRegistration)
        {
            output.Line(string.Empty);
            output.Line("  WARNING: --open-registration is on. ANY client that can reach the broker can register a device");
            output.Line("  WARNING: without a credential. Use it only on a trusted, isolated network.");
        }

        if (!options.DurableCommits)
        {
            output.Line(string.Empty);
            output.Line("  --relaxed-durability: writes are acknowledged before they reach the disk; a power loss can lose the last ones.");
        }

        if (options.RequireEncryption)
        {
            output.Line(string.Empty);
            output.Line("  Requests must be end-to-end encrypted (--require-encryption); devices need --encrypt.");
        }

        output.Line(string.Empty);
        output.Line("Next: create a provisioning token, then register a device with it:");
        var serverArg = http == "http://127.0.0.1:8080" ? string.Empty : $" --server {http}";
        var dataArg = Path.GetFullPath("enroll-data") == host.DataDirectory ? string.Empty : $" --data-dir {host.DataDirectory}";
        output.Line($"  enroll tokens create --org demo --auto-approve{serverArg}{dataArg}");
        output.Line($"  enroll device register --broker {mqtt} --client-id my-device --token <token>");
        output.Line(string.Empty);
        output.Line("Press Ctrl+C to stop.");
        output.Out.Flush();
    }

    /// <summary>Where a connection string points (host, port, database, user), for the banner; never a password.</summary>
    private static string PostgresTarget(string connectionString)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        return $"{builder.Username}@{builder.Host}:{builder.Port}/{builder.Database}";
    }
}
