using System.Globalization;
using Spectre.Console;

namespace Enroll.Cli.Infrastructure;

/// <summary>
/// Progress of a long copy on standard error: a Spectre.Console progress bar when standard error is a terminal, else one
/// line every <see cref="LineInterval"/> (logs and CI keep a few lines, not a redrawn bar). Small copies show none.
/// </summary>
internal static class ByteProgress
{
    /// <summary>Copies smaller than this show no progress.</summary>
    public const long Threshold = 1024 * 1024;

    /// <summary>How often a progress line is written when standard error is not a terminal. The default is 5 seconds.</summary>
    internal static TimeSpan LineInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Runs <paramref name="work"/>, which reports the bytes done so far (of <paramref name="total"/>) through the callback it is given.</summary>
    public static async Task<T> RunAsync<T>(Output output, string description, long total, Func<Action<long>, Task<T>> work)
    {
        if (total < Threshold)
        {
            return await work(_ => { });
        }

        if (ReferenceEquals(output.Error, System.Console.Error) && !System.Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(System.Console.Error) });
            return await console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                .StartAsync(async context =>
                {
                    var task = context.AddTask(Markup.Escape(description), maxValue: total);
                    return await work(done => task.Value = done);
                });
        }

        var time = TimeProvider.System;
        var last = time.GetTimestamp();
        return await work(done =>
        {
            if (time.GetElapsedTime(last) >= LineInterval)
            {
                last = time.GetTimestamp();
                output.Error.WriteLine($"enroll: {description}: {Size(done)} of {Size(total)} ({Percent(done, total)}%)");
            }
        });
    }

    /// <summary>A byte count for people: <c>512 B</c>, <c>1.5 KiB</c>, <c>200.0 MiB</c>, <c>1.0 GiB</c>.</summary>
    public static string Size(long bytes) => bytes switch
    {
        < 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
        < 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.0} KiB"),
        < 1024L * 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024):0.0} MiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024 * 1024):0.0} GiB"),
    };

    public static int Percent(long done, long total) => total <= 0 ? 100 : (int)(done * 100 / total);
}
