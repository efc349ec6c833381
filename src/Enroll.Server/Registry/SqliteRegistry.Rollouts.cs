using System.Text;
using System.Text.Json;
using static Enroll.Server.Registry.RegistryRows;

namespace Enroll.Server.Registry;

internal sealed partial class SqliteRegistry
{
    public Task<RolloutRecord> CreateRolloutAsync(RolloutRecord rollout, IReadOnlyDictionary<string, string> filter, CancellationToken cancellationToken = default)
    {
        var (where, parameters) = RolloutFilter.Sqlite(filter);
        return _database.WriteAsync(
            context =>
            {
                var total = context.Execute(
                    "INSERT INTO command_rollout_targets (rollout_id, device_id, state) SELECT $rollout, d.device_id, 'waiting'"
                    + " FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id WHERE d.org_id = $org AND d.status = 'active'" + where,
                    [("$rollout", rollout.RolloutId), ("$org", rollout.OrgId), .. parameters]);
                var stored = rollout with { Total = total };
                context.Execute(
                    "INSERT INTO command_rollouts (" + RolloutRecord.Columns + ", next_at) VALUES ($id, $org, $filter, $name, $payload, $ttl, $rate, $at, $total, $at)",
                    ("$id", stored.RolloutId),
                    ("$org", stored.OrgId),
                    ("$filter", stored.Filter),
                    ("$name", stored.Name),
                    ("$payload", stored.Payload),
                    ("$ttl", (long)stored.Ttl.TotalMilliseconds),
                    ("$rate", stored.RatePerMinute),
                    ("$at", ToUnix(stored.CreatedAt)),
                    ("$total", total));
                return stored;
            },
            cancellationToken);
    }

    private const string DueRollouts =
        " FROM command_rollouts r WHERE next_at <= $now"
        + " AND EXISTS (SELECT 1 FROM command_rollout_targets g WHERE g.rollout_id = r.rollout_id AND g.state = 'waiting')";

    public Task<IReadOnlyList<CommandRecord>> AdvanceRolloutsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        // The advancer asks every second: a read answers "nothing due" without taking the one writer.
        Query("SELECT 1" + DueRollouts + " LIMIT 1", r => r.GetInt64(0), ("$now", ToUnix(now))).Count == 0
            ? Task.FromResult<IReadOnlyList<CommandRecord>>([])
            : AdvanceDueRolloutsAsync(now, cancellationToken);

    private Task<IReadOnlyList<CommandRecord>> AdvanceDueRolloutsAsync(DateTimeOffset now, CancellationToken cancellationToken) =>
        _database.WriteAsync<IReadOnlyList<CommandRecord>>(
            context =>
            {
                var due = new List<(RolloutRecord Rollout, DateTimeOffset NextAt)>();
                using (var reader = context.Command(
                    "SELECT " + RolloutRecord.Columns + ", next_at" + DueRollouts,
                    ("$now", ToUnix(now))).ExecuteReader())
                {
                    while (reader.Read())
                    {
                        due.Add((RolloutRecord.Read(reader), FromUnix(reader.GetInt64(9))));
                    }
                }

                var queued = new List<CommandRecord>();
                foreach (var (rollout, nextAt) in due)
                {
                    var (count, next) = rollout.Due(nextAt, now);
                    var devices = new List<string>();
                    using (var reader = context.Command(
                        "SELECT device_id FROM command_rollout_targets WHERE rollout_id = $id AND state = 'waiting' ORDER BY device_id LIMIT $count",
                        ("$id", rollout.RolloutId),
                        ("$count", count)).ExecuteReader())
                    {
                        while (reader.Read())
                        {
                            devices.Add(reader.GetString(0));
                        }
                    }

                    foreach (var device in devices)
                    {
                        var outcome = EnqueueIn(context, device, rollout.Name, rollout.Payload, rollout.Ttl, now, rollout.RolloutId);
                        context.Execute(
                            "UPDATE command_rollout_targets SET state = $state, command_id = $command WHERE rollout_id = $id AND device_id = $device",
                            ("$id", rollout.RolloutId),
                            ("$device", device),
                            ("$state", outcome.Command is null ? RolloutRecord.Refused : RolloutRecord.Queued),
                            ("$command", outcome.Command?.CommandId));
                        if (outcome.Command is { } command)
                        {
                            queued.Add(command);
                        }
                    }

                    context.Execute("UPDATE command_rollouts SET next_at = $next WHERE rollout_id = $id", ("$id", rollout.RolloutId), ("$next", ToUnix(next)));
                }

                return queued;
            },
            cancellationToken);

    public Task<RolloutProgress?> GetRolloutAsync(string rolloutId, CancellationToken cancellationToken = default) =>
        Task.FromResult(_database.Read<RolloutProgress?>(context =>
        {
            RolloutRecord? rollout;
            using (var reader = context.Command("SELECT " + RolloutRecord.Columns + " FROM command_rollouts WHERE rollout_id = $id", ("$id", rolloutId)).ExecuteReader())
            {
                rollout = reader.Read() ? RolloutRecord.Read(reader) : null;
            }

            if (rollout is null)
            {
                return null;
            }

            var targets = new Dictionary<string, int>(StringComparer.Ordinal);
            using (var reader = context.Command("SELECT state, COUNT(*) FROM command_rollout_targets WHERE rollout_id = $id GROUP BY state", ("$id", rolloutId)).ExecuteReader())
            {
                while (reader.Read())
                {
                    targets[reader.GetString(0)] = (int)reader.GetInt64(1);
                }
            }

            var commands = new Dictionary<string, int>(StringComparer.Ordinal);
            using (var reader = context.Command("SELECT state, COUNT(*) FROM commands WHERE rollout_id = $id GROUP BY state", ("$id", rolloutId)).ExecuteReader())
            {
                while (reader.Read())
                {
                    commands[reader.GetString(0)] = (int)reader.GetInt64(1);
                }
            }

            return new RolloutProgress(rollout, targets.GetValueOrDefault(RolloutRecord.Waiting), targets.GetValueOrDefault(RolloutRecord.Refused), commands);
        }));
}

/// <summary>The device filter of a rollout: keys <c>metadata.K</c> or <c>reported.K</c>, each compared as text.</summary>
internal static class RolloutFilter
{
    /// <summary>Why <paramref name="key"/> cannot be a filter key, or null.</summary>
    public static string? Check(string key)
    {
        var dot = key.IndexOf('.', StringComparison.Ordinal);
        var source = dot < 0 ? key : key[..dot];
        var name = dot < 0 ? string.Empty : key[(dot + 1)..];
        return source is not ("metadata" or "reported") || name.Length is 0 or > 128 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-')
            ? $"a filter key is metadata.NAME or reported.NAME, NAME 1 to 128 letters, digits, '_' or '-' ('{key}' is not)"
            : null;
    }

    /// <summary>The filter as JSON text, for the rollout row.</summary>
    public static string Json(IReadOnlyDictionary<string, string> filter) =>
        JsonSerializer.Serialize(new Dictionary<string, string>(filter), RegistryJsonContext.Default.DictionaryStringString);

    public static (string Where, (string Name, object? Value)[] Parameters) Sqlite(IReadOnlyDictionary<string, string> filter)
    {
        var where = new StringBuilder();
        var parameters = new List<(string, object?)>();
        var i = 0;
        foreach (var (key, value) in filter.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var (column, name) = Split(key);
            where.Append(System.Globalization.CultureInfo.InvariantCulture, $" AND CAST(json_extract({column}, $path{i}) AS TEXT) = $value{i}");
            parameters.Add(($"$path{i}", $"$.\"{name}\""));
            parameters.Add(($"$value{i}", value));
            i++;
        }

        return (where.ToString(), [.. parameters]);
    }

    /// <summary>The filter's conditions with positional parameters from <c>$<paramref name="first"/></c>.</summary>
    public static (string Where, object?[] Values) Postgres(IReadOnlyDictionary<string, string> filter, int first)
    {
        var where = new StringBuilder();
        var values = new List<object?>();
        foreach (var (key, value) in filter.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var (column, name) = Split(key);
            where.Append(System.Globalization.CultureInfo.InvariantCulture, $" AND ({column}::jsonb ->> ${first + values.Count}) = ${first + values.Count + 1}");
            values.Add(name);
            values.Add(value);
        }

        return (where.ToString(), [.. values]);
    }

    private static (string Column, string Name) Split(string key)
    {
        if (Check(key) is { } problem)
        {
            throw new ArgumentException(problem, nameof(key));
        }

        var dot = key.IndexOf('.', StringComparison.Ordinal);
        return (key[..dot] == "metadata" ? "d.metadata" : "t.reported", key[(dot + 1)..]);
    }
}
