using System.Data.Common;
using System.Security.Cryptography;

namespace Enroll.Server.Registry;

/// <summary>
/// Fleet commands (rollouts): one command for every device of an organisation that matched a filter when the rollout was
/// created, queued at most <see cref="RolloutRecord.RatePerMinute"/> devices a minute. The store picks the targets and
/// queues their commands in one transaction per advance, so any instance may advance any rollout and no device gets the
/// rollout's command twice (PostgreSQL: the rollout row is claimed <c>FOR UPDATE SKIP LOCKED</c>).
/// </summary>
internal interface ICommandRolloutStore
{
    /// <summary>
    /// Stores <paramref name="rollout"/> with a target row for each active device of its organisation whose metadata (keys
    /// <c>metadata.K</c>) and reported twin (keys <c>reported.K</c>) have the values in <paramref name="filter"/> (all of
    /// them, compared as text); returns the rollout with its <see cref="RolloutRecord.Total"/>.
    /// </summary>
    Task<RolloutRecord> CreateRolloutAsync(RolloutRecord rollout, IReadOnlyDictionary<string, string> filter, CancellationToken cancellationToken = default);

    /// <summary>
    /// For each rollout due at <paramref name="now"/>: queues the command for as many of its waiting targets as its rate
    /// allows since it last advanced (at most a minute's worth), each under the device's outstanding limit (a device at the
    /// limit is marked refused), and returns the commands queued, for delivery.
    /// </summary>
    Task<IReadOnlyList<CommandRecord>> AdvanceRolloutsAsync(DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>The rollout and how its targets stand, or null.</summary>
    Task<RolloutProgress?> GetRolloutAsync(string rolloutId, CancellationToken cancellationToken = default);
}

/// <summary>A fleet command as stored.</summary>
internal sealed record RolloutRecord(string RolloutId, string OrgId, string Filter, string Name, string? Payload, TimeSpan Ttl, int RatePerMinute, DateTimeOffset CreatedAt, int Total = 0)
{
    /// <summary>Target states before a command exists.</summary>
    public const string Waiting = "waiting";

    /// <summary>The target's command was queued (its state is the command's).</summary>
    public const string Queued = "queued";

    /// <summary>The device had too many outstanding commands when its turn came.</summary>
    public const string Refused = "refused";

    public const string Columns = "rollout_id, org_id, filter, name, payload, ttl_ms, rate_per_minute, created_at, total";

    private const string IdAlphabet = "abcdefghijkmnpqrstuvwxyz23456789";

    /// <summary>The time between two devices at the rollout's rate.</summary>
    public TimeSpan Spacing => TimeSpan.FromMinutes(1) / RatePerMinute;

    public static RolloutRecord Read(DbDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        r.GetString(2),
        r.GetString(3),
        RegistryRows.StringOrNull(r, 4),
        TimeSpan.FromMilliseconds(r.GetInt64(5)),
        (int)r.GetInt64(6),
        RegistryRows.FromUnix(r.GetInt64(7)),
        (int)r.GetInt64(8));

    /// <summary>How many targets a rollout that may go from <paramref name="nextAt"/> takes at <paramref name="now"/>, and when it may go next.</summary>
    public (int Count, DateTimeOffset NextAt) Due(DateTimeOffset nextAt, DateTimeOffset now)
    {
        // A rollout that was not advanced for a while (no instance running) does not make up for it: within any minute at
        // most RatePerMinute devices go.
        var earliest = now - TimeSpan.FromMinutes(1) + Spacing;
        var from = nextAt < earliest ? earliest : nextAt;
        var count = (int)Math.Min(RatePerMinute, Math.Floor((now - from) / Spacing) + 1);
        return (count, from + (Spacing * count));
    }

    /// <summary>A new rollout ID: <c>rol_</c> and 20 random characters.</summary>
    public static string NewId()
    {
        Span<byte> bytes = stackalloc byte[20];
        RandomNumberGenerator.Fill(bytes);
        var chars = new char[20];
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = IdAlphabet[bytes[i] & 31];
        }

        return "rol_" + new string(chars);
    }
}

/// <summary>A rollout and its counts: targets still waiting for their turn, refused at the limit, and the rollout's commands by state.</summary>
internal sealed record RolloutProgress(RolloutRecord Rollout, int Waiting, int Refused, IReadOnlyDictionary<string, int> Commands)
{
    /// <summary>True when every target has a final command or was refused.</summary>
    public bool IsDone => Waiting == 0 && Commands.Where(c => !Protocol.Messages.CommandStatuses.IsFinal(c.Key)).Sum(c => c.Value) == 0;
}
