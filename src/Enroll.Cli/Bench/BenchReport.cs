using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Enroll.Cli.Infrastructure;
using Spectre.Console;

namespace Enroll.Cli.Bench;

/// <summary>One measured quantity of a benchmark: the median of its runs, and every run.</summary>
internal sealed record BenchMeasurement(string Name, string Unit, IReadOnlyList<double> Runs)
{
    public double Median
    {
        get
        {
            var sorted = Runs.Order().ToList();
            return sorted.Count == 0 ? double.NaN : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
        }
    }
}

/// <summary>A ratio of two measurements against its target (<c>≥</c> or <c>≤</c>).</summary>
internal sealed record BenchRatio(string Name, double Value, double Target, bool AtLeast)
{
    public bool Met => AtLeast ? Value >= Target : Value <= Target;
}

/// <summary>
/// What every <c>enroll bench</c> prints: the machine, each measurement (median of the runs, with the runs), the ratios
/// with their targets, and the verdict; as a table, or with <c>--json</c> as one object.
/// </summary>
internal sealed class BenchReport(string benchmark)
{
    private readonly List<BenchMeasurement> _measurements = [];
    private readonly List<BenchRatio> _ratios = [];
    private readonly List<string> _notes = [];

    public string Benchmark { get; } = benchmark;

    public BenchMeasurement Add(string name, string unit, IEnumerable<double> runs)
    {
        var measurement = new BenchMeasurement(name, unit, runs.ToList());
        _measurements.Add(measurement);
        return measurement;
    }

    public BenchRatio Ratio(string name, BenchMeasurement numerator, BenchMeasurement denominator, double target, bool atLeast = true)
    {
        var ratio = new BenchRatio(name, numerator.Median / denominator.Median, target, atLeast);
        _ratios.Add(ratio);
        return ratio;
    }

    public void Note(string note) => _notes.Add(note);

    public bool AllTargetsMet => _ratios.All(r => r.Met);

    public void Print(Output output, bool json)
    {
        if (json)
        {
            var document = new BenchJson
            {
                Benchmark = Benchmark,
                Machine = Machine(),
                Measurements = _measurements.Select(m => new BenchJsonMeasurement { Name = m.Name, Unit = m.Unit, Median = Math.Round(m.Median, 3), Runs = m.Runs.Select(r => Math.Round(r, 3)).ToList() }).ToList(),
                Ratios = _ratios.Select(r => new BenchJsonRatio { Name = r.Name, Value = Math.Round(r.Value, 3), Target = r.Target, Comparison = r.AtLeast ? ">=" : "<=", Met = r.Met }).ToList(),
                Notes = _notes,
            };
            output.Out.WriteLine(JsonSerializer.Serialize(document, BenchJsonContext.Default.BenchJson));
            return;
        }

        output.Line($"enroll bench {Benchmark} on {Machine()}");
        var table = new Table().AddColumns("Measurement", "Median", "Unit", "Runs");
        foreach (var m in _measurements)
        {
            table.AddRow(Markup.Escape(m.Name), Format(m.Median), m.Unit, string.Join("  ", m.Runs.Select(Format)));
        }

        output.Console.Write(table);
        if (_ratios.Count > 0)
        {
            var ratios = new Table().AddColumns("Ratio", "Value", "Target", "");
            foreach (var r in _ratios)
            {
                ratios.AddRow(Markup.Escape(r.Name), FormatRatio(r.Value, r.Target), $"{(r.AtLeast ? ">=" : "<=")} {r.Target.ToString("0.0#", CultureInfo.InvariantCulture)}", r.Met ? "[green]met[/]" : "[red]missed[/]");
            }

            output.Console.Write(ratios);
        }

        foreach (var note in _notes)
        {
            output.Line(note);
        }
    }

    public static string Machine() =>
        $"{Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024 * 1024 * 1024.0):0.#} GiB, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";

    /// <summary>Two decimals, or four when two would round a ratio onto its target and hide which side it is on.</summary>
    private static string FormatRatio(double value, double target) =>
        value.ToString(Math.Abs(value - target) < 0.005 && value != target ? "0.0000" : "0.00", CultureInfo.InvariantCulture);

    private static string Format(double value) =>
        value >= 100 ? value.ToString("N0", CultureInfo.InvariantCulture) : value.ToString("0.###", CultureInfo.InvariantCulture);
}

internal sealed record BenchJson
{
    public required string Benchmark { get; init; }

    public required string Machine { get; init; }

    public required List<BenchJsonMeasurement> Measurements { get; init; }

    public required List<BenchJsonRatio> Ratios { get; init; }

    public required List<string> Notes { get; init; }
}

internal sealed record BenchJsonMeasurement
{
    public required string Name { get; init; }

    public required string Unit { get; init; }

    public double Median { get; init; }

    public required List<double> Runs { get; init; }
}

internal sealed record BenchJsonRatio
{
    public required string Name { get; init; }

    public double Value { get; init; }

    public double Target { get; init; }

    public required string Comparison { get; init; }

    public bool Met { get; init; }
}

// A run that completed nothing has no percentile (NaN) and its ratios divide by zero: written as "NaN" / "Infinity"
// rather than failing the whole report.
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(BenchJson))]
internal sealed partial class BenchJsonContext : JsonSerializerContext;
