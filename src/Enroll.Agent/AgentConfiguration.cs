using System.Collections;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Enroll.Cli.Commands;
using Enroll.Cli.Infrastructure;

namespace Enroll.Agent;

/// <summary>
/// The agent's settings from its configuration file (<c>/etc/enroll/agent.json</c>, or <c>--config</c>, or
/// <c>ENROLL_AGENT_CONFIG</c>) and then environment variables (<c>ENROLL_AGENT_CLIENT_ID</c>, ...), applied as the
/// defaults of the device commands' flags: a flag on the command line wins over both, a variable over the file. So a
/// packaged service runs as <c>enroll-agent run</c> alone. An unknown key or a bad value is a <see cref="CliUsageException"/>
/// naming the key and where it came from (exit code 2).
/// </summary>
internal sealed class AgentConfiguration
{
    /// <summary>The configuration file when neither <c>--config</c> nor <c>ENROLL_AGENT_CONFIG</c> names one; it may be absent.</summary>
    public const string DefaultPath = "/etc/enroll/agent.json";

    /// <summary>The flag naming the configuration file.</summary>
    public const string ConfigFlag = "--config";

    /// <summary>The environment variable naming the configuration file; every other setting's variable starts the same way.</summary>
    public const string ConfigVariable = EnvironmentPrefix + "CONFIG";

    private const string EnvironmentPrefix = "ENROLL_AGENT_";

    private static readonly JsonDocumentOptions FileOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    private readonly Dictionary<Setting, (string Value, string Source)> _values;

    private AgentConfiguration(string? path, Dictionary<Setting, (string Value, string Source)> values)
    {
        FilePath = path;
        _values = values;
    }

    /// <summary>The kinds of value a setting takes, each checked as its flag would be.</summary>
    internal enum Kind
    {
        Text,
        Uri,
        Duration,
        Count,
        Bytes,
        Switch,
        MqttVersion,
        LogFormat,
        OtlpEndpoint,
    }

    /// <summary>Every setting: its key in the file (camelCase), its flag, and its environment variable (derived from the key).</summary>
    internal static IReadOnlyList<Setting> Settings { get; } =
    [
        new("broker", "--broker", Kind.Uri),
        new("clientId", "--client-id", Kind.Text),
        new("token", "--token", Kind.Text),
        new("tokenFile", "--token-file", Kind.Text),
        new("org", "--org", Kind.Text),
        new("desiredDeviceId", "--desired-device-id", Kind.Text),
        new("name", "--name", Kind.Text, NotFor: "upload"), // `upload --name` names the file, not the device
        new("state", "--state", Kind.Text),
        new("attemptTimeout", "--attempt-timeout", Kind.Duration),
        new("maxAttempts", "--max-attempts", Kind.Count),
        new("maxBackoff", "--max-backoff", Kind.Duration),
        new("mqttVersion", "--mqtt-version", Kind.MqttVersion),
        new("serverKeys", "--server-keys", Kind.Text),
        new("ca", "--ca", Kind.Text),
        new("cert", "--cert", Kind.Text),
        new("key", "--key", Kind.Text),
        new("encrypt", "--encrypt", Kind.Switch),
        new("outboxMaxMessages", "--outbox-max-messages", Kind.Count),
        new("outboxMaxBytes", "--outbox-max-bytes", Kind.Bytes),
        new("commandHandler", "--command-handler", Kind.Text),
        new("logFormat", "--log-format", Kind.LogFormat),
        new("otlpEndpoint", "--otlp-endpoint", Kind.OtlpEndpoint),
        new("deliver", "--deliver", Kind.Switch),
        new("verbose", "--verbose", Kind.Switch),
    ];

    /// <summary>The configuration file read, or null when there was none.</summary>
    public string? FilePath { get; }

    /// <summary>The settings given, with where each came from (the file, or an environment variable), in key order.</summary>
    public IEnumerable<(Setting Setting, string Value, string Source)> Values =>
        Settings.Where(_values.ContainsKey).Select(s => (s, _values[s].Value, _values[s].Source));

    /// <summary>
    /// Reads the configuration file (the one <c>--config</c> in <paramref name="args"/> names, else <c>ENROLL_AGENT_CONFIG</c>,
    /// else <see cref="DefaultPath"/> when it exists) and then the <c>ENROLL_AGENT_*</c> variables of <paramref name="environment"/>.
    /// </summary>
    public static AgentConfiguration Load(IReadOnlyList<string> args, IDictionary environment, string defaultPath = DefaultPath)
    {
        var variables = environment.Cast<DictionaryEntry>()
            .Where(e => e.Key is string && e.Value is string)
            .ToDictionary(e => (string)e.Key, e => (string)e.Value!, StringComparer.Ordinal);
        var (path, required) = ConfigPath(args) is { } fromFlag ? (fromFlag, $"{ConfigFlag} {fromFlag}")
            : variables.TryGetValue(ConfigVariable, out var fromVariable) && fromVariable.Length > 0 ? (fromVariable, $"{ConfigVariable}={fromVariable}")
            : (defaultPath, null);

        var values = new Dictionary<Setting, (string, string)>();
        string? read = null;
        if (File.Exists(path))
        {
            read = Path.GetFullPath(path);
            ReadFile(read, values);
        }
        else if (required is not null)
        {
            throw new CliUsageException($"{required}: the configuration file {Path.GetFullPath(path)} does not exist");
        }

        foreach (var (name, text) in variables.Where(v => v.Key.StartsWith(EnvironmentPrefix, StringComparison.Ordinal) && v.Key != ConfigVariable).OrderBy(v => v.Key, StringComparer.Ordinal))
        {
            var source = $"environment variable {name}";
            var setting = Settings.FirstOrDefault(s => s.Variable == name)
                ?? throw new CliUsageException($"{source}: unknown setting; the agent's variables are {string.Join(", ", Settings.Select(s => s.Variable))} (and {ConfigVariable})");
            values[setting] = (Check(setting, text, source), source);
        }

        return new AgentConfiguration(read, values);
    }

    /// <summary>
    /// Makes the settings the defaults of the matching flags of every command under <paramref name="root"/>, so that a
    /// flag given on the command line still wins.
    /// </summary>
    public void ApplyTo(Command root)
    {
        foreach (var command in Walk(root))
        {
            foreach (var option in command.Options)
            {
                var setting = Settings.FirstOrDefault(s => s.Flag == option.Name && s.NotFor != command.Name);
                if (setting is null || !_values.TryGetValue(setting, out var given))
                {
                    continue;
                }

                var value = given.Value;
                switch (option)
                {
                    case Option<string> text:
                        text.DefaultValueFactory = _ => value;
                        break;
                    case Option<int> count:
                        count.DefaultValueFactory = _ => int.Parse(value, CultureInfo.InvariantCulture);
                        break;
                    case Option<long> bytes:
                        bytes.DefaultValueFactory = _ => long.Parse(value, CultureInfo.InvariantCulture);
                        break;
                    case Option<bool> flag:
                        flag.DefaultValueFactory = _ => bool.Parse(value);
                        break;
                    default:
                        throw new InvalidOperationException($"{option.Name} of {command.Name} has a type the configuration cannot set");
                }
            }
        }
    }

    /// <summary>The value of <c>--config PATH</c> (or <c>--config=PATH</c>) in <paramref name="args"/>, if any.</summary>
    private static string? ConfigPath(IReadOnlyList<string> args)
    {
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == "--")
            {
                break;
            }

            if (args[i] == ConfigFlag)
            {
                return i + 1 < args.Count ? args[i + 1] : throw new CliUsageException($"{ConfigFlag} needs a file name");
            }

            if (args[i].StartsWith(ConfigFlag + "=", StringComparison.Ordinal))
            {
                return args[i][(ConfigFlag.Length + 1)..];
            }
        }

        return null;
    }

    private static void ReadFile(string path, Dictionary<Setting, (string, string)> values)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path), FileOptions);
        }
        catch (JsonException ex)
        {
            throw new CliUsageException($"{path}: not valid JSON: {ex.Message}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliUsageException($"{path}: cannot read the configuration file: {ex.Message}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new CliUsageException($"{path}: the configuration must be a JSON object of settings, such as {{ \"broker\": \"mqtts://broker.example:8883\" }}");
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                var source = $"{path}: key '{property.Name}'";
                var setting = Settings.FirstOrDefault(s => s.Key == property.Name)
                    ?? throw new CliUsageException($"{source}: unknown setting; the keys are {string.Join(", ", Settings.Select(s => s.Key))}");
                var text = property.Value.ValueKind switch
                {
                    JsonValueKind.String => property.Value.GetString()!,
                    JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False when setting.Kind is Kind.Count or Kind.Bytes or Kind.Switch => property.Value.GetRawText(),
                    _ => throw new CliUsageException($"{source}: {property.Value.ValueKind.ToString().ToLowerInvariant()} is not {Expected(setting.Kind)}"),
                };
                values[setting] = (Check(setting, text, source), $"{path}");
            }
        }
    }

    /// <summary>Checks <paramref name="text"/> as the setting's flag would and returns it as the flag's default takes it.</summary>
    private static string Check(Setting setting, string text, string source)
    {
        var valid = setting.Kind switch
        {
            Kind.Text => text.Length > 0,
            Kind.Uri => System.Uri.TryCreate(text, UriKind.Absolute, out _),
            Kind.Duration => Durations.TryParse(text, false, out _),
            Kind.Count => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1,
            Kind.Bytes => long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1,
            Kind.Switch => text is "true" or "false",
            Kind.MqttVersion => text is "5" or "5.0" or "3.1.1" or "3" or "4",
            Kind.LogFormat => text is "text" or "json",
            Kind.OtlpEndpoint => DeviceFlags.ParseOtlp(text) is not null,
            _ => false,
        };
        return valid ? text : throw new CliUsageException($"{source}: '{text}' is not {Expected(setting.Kind)} (as for {setting.Flag})");
    }

    private static string Expected(Kind kind) => kind switch
    {
        Kind.Text => "a non-empty string",
        Kind.Uri => "an absolute URI such as mqtts://broker.example:8883",
        Kind.Duration => "a duration such as 90s, 15m, 12h or 30d",
        Kind.Count => "a whole number of 1 or more",
        Kind.Bytes => "a number of bytes, 1 or more",
        Kind.Switch => "true or false",
        Kind.MqttVersion => "an MQTT version, \"5\" or \"3.1.1\"",
        Kind.LogFormat => "\"text\" or \"json\"",
        Kind.OtlpEndpoint => "an http:// or https:// URL",
        _ => kind.ToString(),
    };

    private static IEnumerable<Command> Walk(Command command) =>
        command.Subcommands.SelectMany(Walk).Prepend(command);

    /// <summary>One setting; <see cref="NotFor"/> names a command where its flag means something else.</summary>
    internal sealed record Setting(string Key, string Flag, Kind Kind, string? NotFor = null)
    {
        /// <summary><c>clientId</c> is <c>ENROLL_AGENT_CLIENT_ID</c>.</summary>
        public string Variable { get; } = EnvironmentPrefix + string.Concat(Key.Select(c => char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));
    }
}
