using System.ComponentModel.DataAnnotations;
using System.Globalization;
using Microsoft.Extensions.Options;

namespace Enroll.Server;

/// <summary>
/// Checks the ranges declared on <see cref="EnrollServerOptions"/> (source-generated from its DataAnnotations). Registered
/// with <see cref="EnrollServerOptionsRules"/> by <c>AddEnrollServer</c> and validated on start; the host also runs both
/// before it opens anything, so a setting that makes no sense (a port above 65535, an access token that expires before a
/// device can use it) stops the start with one line naming the setting, its value and the range, instead of a stack
/// trace or a fleet in a renewal storm.
/// </summary>
[OptionsValidator]
internal sealed partial class EnrollServerOptionsValidator : IValidateOptions<EnrollServerOptions>;

/// <summary>The rules of <see cref="EnrollServerOptions"/> that tie two settings together, which DataAnnotations cannot express.</summary>
internal sealed class EnrollServerOptionsRules : IValidateOptions<EnrollServerOptions>
{
    public ValidateOptionsResult Validate(string? name, EnrollServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.AccessTokenLifetime > options.RegistrationTokenLifetime)
        {
            failures.Add($"the access token lifetime ({EnrollServerOptionsValidation.Show(options.AccessTokenLifetime)}) must not be longer than the registration token lifetime ({EnrollServerOptionsValidation.Show(options.RegistrationTokenLifetime)}): a device renews its access token with its Registration Token");
        }

        if (options.BrokerAdmin != BrokerAdmin.None && options.ExternalBroker is null)
        {
            failures.Add($"the broker administrator {options.BrokerAdmin} needs an external broker: the embedded broker checks access tokens itself");
        }

        if (options.BrokerAdmin == BrokerAdmin.EmqxApi && (options.BrokerAdminUrl is not { Scheme: "http" or "https" } || options.BrokerAdminKey is not { } adminKey || adminKey.IndexOf(':', StringComparison.Ordinal) is < 1 || adminKey.EndsWith(':')))
        {
            failures.Add("the EMQX administrator needs the API's http(s):// address (--broker-emqx-api) and an API key as key:secret in ENROLL_BROKER_ADMIN_KEY");
        }

        // A request travels in one packet, so it can be no larger than a packet.
        var maxRequest = Math.Max(1024, options.MaxPacketBytes);
        if (options.MaxRequestBytes < 1024 || options.MaxRequestBytes > maxRequest)
        {
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"the maximum request size {options.MaxRequestBytes:N0} is out of range: use 1,024 to {maxRequest:N0}"));
        }

        if (options.Database is { } database && DatabaseProblem(database) is { } problem)
        {
            failures.Add(problem);
        }

        if (options.KeyEncryptionKeyFile is { } kek && !File.Exists(kek))
        {
            failures.Add($"the key-encryption key file '{kek}' (--key-encryption-key-file) does not exist: {Tokens.KeyEncryptionKey.HowToMake}");
        }

        if (options.BrokerClientId is { } clientId && !IsBrokerClientId(clientId))
        {
            failures.Add($"the broker client ID '{clientId}' is not valid: use 1-100 letters, digits, '.', '_', '-' or ':'");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>What is wrong with <paramref name="connectionString"/> as <see cref="EnrollServerOptions.Database"/>, or null.</summary>
    private static string? DatabaseProblem(string connectionString)
    {
        Npgsql.NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException ex)
        {
            return $"the database connection string is not valid: {ex.Message}";
        }

        if (!string.IsNullOrEmpty(builder.Password))
        {
            // A password on the command line is visible to every user of the machine (ps); configuration files get copied.
            return "the database connection string must not contain a password: set ENROLL_DATABASE_PASSWORD or use a passfile (PGPASSFILE, ~/.pgpass)";
        }

        return string.IsNullOrEmpty(builder.Host) ? "the database connection string names no Host" : null;
    }

    private static bool IsBrokerClientId(string id) =>
        id.Length is > 0 and <= 100 && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':');
}

/// <summary>The valid ranges of <see cref="EnrollServerOptions"/> that other parts use, and the check the host runs before it opens anything.</summary>
internal static class EnrollServerOptionsValidation
{
    public const string MinAccessTokenLifetimeText = "00:01:00";
    public const string MaxAccessTokenLifetimeText = "30.00:00:00";
    public const string MinRegistrationTokenLifetimeText = "01:00:00";
    public const string MaxRegistrationTokenLifetimeText = "3650.00:00:00";

    public static readonly TimeSpan MinAccessTokenLifetime = TimeSpan.Parse(MinAccessTokenLifetimeText, CultureInfo.InvariantCulture);
    public static readonly TimeSpan MaxAccessTokenLifetime = TimeSpan.Parse(MaxAccessTokenLifetimeText, CultureInfo.InvariantCulture);
    public static readonly TimeSpan MinRegistrationTokenLifetime = TimeSpan.Parse(MinRegistrationTokenLifetimeText, CultureInfo.InvariantCulture);
    public static readonly TimeSpan MaxRegistrationTokenLifetime = TimeSpan.Parse(MaxRegistrationTokenLifetimeText, CultureInfo.InvariantCulture);

    /// <summary>The validators <c>AddEnrollServer</c> registers: the declared ranges, then the rules between settings.</summary>
    public static IReadOnlyList<IValidateOptions<EnrollServerOptions>> Validators { get; } = [new EnrollServerOptionsValidator(), new EnrollServerOptionsRules()];

    /// <summary>Every problem of <paramref name="options"/>; empty when it is valid.</summary>
    public static List<string> Problems(EnrollServerOptions options)
    {
        var problems = new List<string>();
        foreach (var validator in Validators)
        {
            if (validator.Validate(Options.DefaultName, options) is { Failed: true } result)
            {
                problems.AddRange(result.Failures);
            }
        }

        return problems;
    }

    /// <summary>Throws <see cref="ServerStartException"/> when <paramref name="options"/> has a problem.</summary>
    public static void ThrowIfInvalid(EnrollServerOptions options)
    {
        var problems = Problems(options);
        if (problems.Count > 0)
        {
            throw Invalid(problems);
        }
    }

    /// <summary>The start failure for <paramref name="problems"/>, all in one line.</summary>
    public static ServerStartException Invalid(IEnumerable<string> problems) =>
        new(ServerStartProblem.InvalidOptions, string.Join("; ", problems));

    /// <summary>A duration as a person writes it: 90s, 5m, 24h, 30d.</summary>
    internal static string Show(TimeSpan value) =>
        value == TimeSpan.Zero ? "0s"
        : value.Ticks % TimeSpan.TicksPerDay == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalDays:0}d")
        : value.Ticks % TimeSpan.TicksPerHour == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalHours:0}h")
        : value.Ticks % TimeSpan.TicksPerMinute == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalMinutes:0}m")
        : value.Ticks % TimeSpan.TicksPerSecond == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalSeconds:0}s")
        : value.ToString("c", CultureInfo.InvariantCulture);
}

/// <summary>A TCP port setting: 1-65535, or 0 to pick a free one. The failure names the setting (<see cref="Setting"/>) and its value.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class PortAttribute(string setting) : ValidationAttribute
{
    /// <summary>The setting as the failure names it, for example <c>MQTT port (--mqtt-port)</c>.</summary>
    public string Setting { get; } = setting;

    protected override ValidationResult? IsValid(object? value, ValidationContext validationContext) =>
        value is int port and (< 0 or > 65535)
            ? new ValidationResult(string.Create(CultureInfo.InvariantCulture, $"the {Setting} {port} is not a TCP port: use 1-65535, or 0 to pick a free one"))
            : ValidationResult.Success;
}

/// <summary>A duration setting between <see cref="Minimum"/> and <see cref="Maximum"/> (written as <see cref="TimeSpan"/> text, <c>d.hh:mm:ss</c>).</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class DurationRangeAttribute(string setting, string minimum, string maximum) : ValidationAttribute
{
    /// <summary>The setting as the failure names it.</summary>
    public string Setting { get; } = setting;

    public string Minimum { get; } = minimum;

    public string Maximum { get; } = maximum;

    protected override ValidationResult? IsValid(object? value, ValidationContext validationContext)
    {
        var min = TimeSpan.Parse(Minimum, CultureInfo.InvariantCulture);
        var max = TimeSpan.Parse(Maximum, CultureInfo.InvariantCulture);
        return value is TimeSpan duration && (duration < min || duration > max)
            ? new ValidationResult($"the {Setting} {EnrollServerOptionsValidation.Show(duration)} is out of range: use {EnrollServerOptionsValidation.Show(min)} to {EnrollServerOptionsValidation.Show(max)}")
            : ValidationResult.Success;
    }
}

/// <summary>A count setting between <see cref="Minimum"/> and <see cref="Maximum"/>; null (where the setting allows it) is valid.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class CountRangeAttribute(string setting, int minimum, int maximum) : ValidationAttribute
{
    /// <summary>The setting as the failure names it.</summary>
    public string Setting { get; } = setting;

    public int Minimum { get; } = minimum;

    public int Maximum { get; } = maximum;

    protected override ValidationResult? IsValid(object? value, ValidationContext validationContext) =>
        value is int count && (count < Minimum || count > Maximum)
            ? new ValidationResult(string.Create(CultureInfo.InvariantCulture, $"the {Setting} {count:N0} is out of range: use {Minimum:N0} to {Maximum:N0}"))
            : ValidationResult.Success;
}

/// <summary>A size setting in bytes between <see cref="Minimum"/> and <see cref="Maximum"/>.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class ByteRangeAttribute(string setting, long minimum, long maximum) : ValidationAttribute
{
    /// <summary>The setting as the failure names it.</summary>
    public string Setting { get; } = setting;

    public long Minimum { get; } = minimum;

    public long Maximum { get; } = maximum;

    protected override ValidationResult? IsValid(object? value, ValidationContext validationContext) =>
        value is long bytes && (bytes < Minimum || bytes > Maximum)
            ? new ValidationResult(string.Create(CultureInfo.InvariantCulture, $"the {Setting} {bytes:N0} bytes is out of range: use {Minimum:N0} to {Maximum:N0} bytes"))
            : ValidationResult.Success;
}
