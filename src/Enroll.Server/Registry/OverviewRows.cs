using System.Data.Common;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Messages;

namespace Enroll.Server.Registry;

/// <summary>
/// What both stores share for <see cref="IRefusalStore"/>: the minute arithmetic of the series, the grouped query of each
/// series, and the folding of a batch of refusals into one row per (minute, kind, source) before it is written.
/// </summary>
internal static class OverviewRows
{
    /// <summary>Buckets of a <see cref="MinuteSeries"/>: the last hour, a minute each.</summary>
    public const int Buckets = 60;

    /// <summary>The longest source or reason kept (longer ones are cut): a client ID or an address, not a payload.</summary>
    public const int MaxText = 200;

    private const long MinuteMilliseconds = 60_000;

    /// <summary>refusals: minute, kind, source, reason, at, refused.</summary>
    public const string RefusalColumns = "minute, kind, source, reason, at, refused";

    /// <summary>The minute <paramref name="at"/> is in, as minutes since the Unix epoch.</summary>
    public static long Minute(DateTimeOffset at) => Math.DivRem(at.ToUnixTimeMilliseconds(), MinuteMilliseconds, out var rest) - (rest < 0 ? 1 : 0);

    /// <summary>The first minute of the series ending with the minute of <paramref name="now"/>, and the Unix-millisecond bounds [from, to) of its rows.</summary>
    public static (long FirstMinute, long From, long To) Window(DateTimeOffset now)
    {
        var first = Minute(now) - (Buckets - 1);
        return (first, first * MinuteMilliseconds, (first + Buckets) * MinuteMilliseconds);
    }

    /// <summary>
    /// The grouped query of <paramref name="series"/>: (minute, count) rows for instants in [<paramref name="from"/>,
    /// <paramref name="to"/>), each column indexed (the migration adds the indexes). A registration is a Registration Token
    /// no other token was replaced by (a refresh's successor is).
    /// </summary>
    public static string SeriesSql(FleetSeries series, string from, string to) => series switch
    {
        FleetSeries.Registrations =>
            $"SELECT t.issued_at / {MinuteMilliseconds}, COUNT(*) FROM registration_tokens t WHERE t.issued_at >= {from} AND t.issued_at < {to} " +
            "AND NOT EXISTS (SELECT 1 FROM registration_tokens p WHERE p.replaced_by = t.jti) GROUP BY 1",
        FleetSeries.Approvals =>
            $"SELECT decided_at / {MinuteMilliseconds}, COUNT(*) FROM provisioning_operations WHERE decided_at >= {from} AND decided_at < {to} " +
            $"AND status IN ('{OperationStatus.Approved}', '{OperationStatus.Completed}') GROUP BY 1",
        FleetSeries.Messages =>
            $"SELECT received_at / {MinuteMilliseconds}, COUNT(*) FROM messages WHERE received_at >= {from} AND received_at < {to} GROUP BY 1",
        _ => throw new ArgumentOutOfRangeException(nameof(series), series, "unknown series"),
    };

    /// <summary>The series from the grouped rows (minute, count); minutes without a row are 0.</summary>
    public static MinuteSeries Series(long firstMinute, IEnumerable<(long Minute, long Count)> rows)
    {
        var counts = new long[Buckets];
        foreach (var (minute, count) in rows)
        {
            var index = minute - firstMinute;
            if (index is >= 0 and < Buckets)
            {
                counts[index] += count;
            }
        }

        return new MinuteSeries { Start = DateTimeOffset.FromUnixTimeMilliseconds(firstMinute * MinuteMilliseconds), Counts = counts };
    }

    /// <summary>(minute, count) of a series row, as both stores select it.</summary>
    public static (long Minute, long Count) ReadBucket(DbDataReader r) => (r.GetInt64(0), r.GetInt64(1));

    /// <summary>A row of <c>refusals</c> (<see cref="RefusalColumns"/>) as the overview shows it.</summary>
    public static RefusalInfo ReadRefusal(DbDataReader r) => new()
    {
        Kind = r.GetString(1),
        Source = r.GetString(2) is { Length: > 0 } source ? source : null,
        Reason = r.IsDBNull(3) ? null : r.GetString(3),
        At = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4)),
        Count = r.GetInt64(5),
    };

    /// <summary>
    /// One row per (minute, kind, source) of <paramref name="refusals"/>: counts added, the latest instant, the reason of the
    /// latest. Sorted by that key, so concurrent writers of overlapping batches lock rows in one order. A missing source
    /// is kept as the empty string (the key's column is NOT NULL).
    /// </summary>
    public static IReadOnlyList<FoldedRefusal> Fold(IReadOnlyList<RefusalInfo> refusals)
    {
        var rows = new Dictionary<(long, string, string), FoldedRefusal>();
        foreach (var refusal in refusals)
        {
            var key = (Minute(refusal.At), Cut(refusal.Kind)!, Cut(refusal.Source) ?? "");
            var at = refusal.At.ToUnixTimeMilliseconds();
            var count = Math.Max(1, refusal.Count);
            rows[key] = rows.TryGetValue(key, out var row)
                ? row with { Count = row.Count + count, At = Math.Max(row.At, at), Reason = at >= row.At ? Cut(refusal.Reason) : row.Reason }
                : new FoldedRefusal(key.Item1, key.Item2, key.Item3, Cut(refusal.Reason), at, count);
        }

        return [.. rows.Values.OrderBy(r => r.Minute).ThenBy(r => r.Kind, StringComparer.Ordinal).ThenBy(r => r.Source, StringComparer.Ordinal)];
    }

    private static string? Cut(string? text) => text is { Length: > MaxText } ? text[..MaxText] : text;
}

/// <summary>One row of <c>refusals</c> to add (see <see cref="OverviewRows.Fold"/>); <see cref="At"/> in Unix milliseconds.</summary>
internal sealed record FoldedRefusal(long Minute, string Kind, string Source, string? Reason, long At, long Count);
