using System.Globalization;

namespace Enroll.Server;

/// <summary>
/// The valid ranges of <see cref="EnrollServerOptions"/>, checked before the server opens anything: a setting that makes
/// no sense (a port above 65535, an access token that expires before a device can use it) stops the start with one line
/// naming the setting, its value and the range, instead of a stack trace or a fleet in a renewal storm.
/// </summary>
internal static class EnrollServerOptionsValidation
{
    public static readonly TimeSpan MinAccessTokenLifetime = TimeSpan.FromMinutes(1);
    public static readonly TimeSpan MaxAccessTokenLifetime = TimeSpan.FromDays(30);
    public static readonly TimeSpan MinRegistrationTokenLifetime = TimeSpan.FromHours(1);
    public static readonly TimeSpan MaxRegistrationTokenLifetime = TimeSpan.FromDays(3650);

    /// <summary>Every problem of <paramref name="options"/>; empty when it is valid.</summary>
    public static List<string> Problems(EnrollServerOptions options)
    {
        var problems = new List<string>();
        Port(problems, "MQTT port (--mqtt-port)", options.MqttPort);
        Port(problems, "HTTP port (--http-port)", options.HttpPort);
        Port(problems, "MQTT-over-TLS port (--mqtts-port)", options.MqttTlsPort);
        Port(problems, "HTTPS port (--https-port)", options.HttpsPort);
        Range(problems, "access token lifetime (--access-token-lifetime)", options.AccessTokenLifetime, MinAccessTokenLifetime, MaxAccessTokenLifetime);
        Range(problems, "registration token lifetime (--registration-token-lifetime)", options.RegistrationTokenLifetime, MinRegistrationTokenLifetime, MaxRegistrationTokenLifetime);
        if (options.AccessTokenLifetime > options.RegistrationTokenLifetime)
        {
            problems.Add($"the access token lifetime ({Show(options.AccessTokenLifetime)}) must not be longer than the registration token lifetime ({Show(options.RegistrationTokenLifetime)}): a device renews its access token with its Registration Token");
        }

        Range(problems, "operation lifetime (--operation-lifetime)", options.OperationLifetime, TimeSpan.FromMinutes(1), TimeSpan.FromDays(365));
        Range(problems, "refresh grace", options.RefreshGrace, TimeSpan.Zero, TimeSpan.FromHours(1));
        Range(problems, "pending poll interval", options.PendingPollInterval, TimeSpan.FromSeconds(1), TimeSpan.FromDays(1));
        Range(problems, "clock skew", options.ClockSkew, TimeSpan.Zero, TimeSpan.FromHours(1));
        Range(problems, "connect timeout", options.ConnectTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5));
        Range(problems, "failure window", options.FailureWindow, TimeSpan.FromSeconds(1), TimeSpan.FromDays(1));
        Range(problems, "maximum keep-alive", options.MaxKeepAlive, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(ushort.MaxValue));
        Range(problems, "disk-full retry-after", options.DiskFullRetryAfter, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1));
        Count(problems, "maximum packet size", options.MaxPacketBytes, 1024, 268_435_455);
        Count(problems, "maximum request size", options.MaxRequestBytes, 1024, Math.Max(1024, options.MaxPacketBytes));
        Count(problems, "maximum admin request body", options.MaxAdminRequestBytes, 1024, 16 * 1024 * 1024);
        Count(problems, "request queue length", options.MaxQueuedRequests, 1, 10_000_000);
        Count(problems, "handler concurrency", options.HandlerConcurrency, 1, 4096);
        Count(problems, "client failure limit", options.ClientFailureLimit, 1, 1_000_000);
        Count(problems, "source failure limit", options.SourceFailureLimit, 1, 1_000_000);
        Count(problems, "admin key failure limit", options.AdminKeyFailureLimit, 1, 1_000_000);
        if (options.MaxConnections is { } connections)
        {
            Count(problems, "maximum connections", connections, 1, 10_000_000);
        }

        return problems;
    }

    /// <summary>Throws <see cref="ServerStartException"/> when <paramref name="options"/> has a problem.</summary>
    public static void ThrowIfInvalid(EnrollServerOptions options)
    {
        var problems = Problems(options);
        if (problems.Count > 0)
        {
            throw new ServerStartException(ServerStartProblem.InvalidOptions, string.Join("; ", problems));
        }
    }

    private static void Port(List<string> problems, string name, int port)
    {
        if (port is < 0 or > 65535)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"the {name} {port} is not a TCP port: use 1-65535, or 0 to pick a free one"));
        }
    }

    private static void Range(List<string> problems, string name, TimeSpan value, TimeSpan min, TimeSpan max)
    {
        if (value < min || value > max)
        {
            problems.Add($"the {name} {Show(value)} is out of range: use {Show(min)} to {Show(max)}");
        }
    }

    private static void Count(List<string> problems, string name, int value, int min, int max)
    {
        if (value < min || value > max)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"the {name} {value:N0} is out of range: use {min:N0} to {max:N0}"));
        }
    }

    /// <summary>A duration as a person writes it: 90s, 5m, 24h, 30d.</summary>
    internal static string Show(TimeSpan value) =>
        value == TimeSpan.Zero ? "0s"
        : value.Ticks % TimeSpan.TicksPerDay == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalDays:0}d")
        : value.Ticks % TimeSpan.TicksPerHour == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalHours:0}h")
        : value.Ticks % TimeSpan.TicksPerMinute == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalMinutes:0}m")
        : value.Ticks % TimeSpan.TicksPerSecond == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalSeconds:0}s")
        : value.ToString("c", CultureInfo.InvariantCulture);
}
