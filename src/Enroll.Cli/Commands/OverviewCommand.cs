using System.CommandLine;
using System.Globalization;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll overview</c>: the fleet at a glance (<c>GET /api/overview</c>), as the console's Overview page shows it.</summary>
internal static class OverviewCommand
{
    public static Command Create()
    {
        var json = CliOptions.Json();
        var command = new Command("overview", "The fleet at a glance: devices by status, pending operations, the last hour per minute, deepest outboxes, recent refusals") { json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var overview = await client.GetAsync("/api/overview", ConsoleJsonContext.Default.FleetOverview, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(overview, ConsoleJsonContext.Default.FleetOverview);
                    return ExitCodes.Ok;
                }

                var devices = string.Join(", ", overview.DevicesByStatus.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Value} {p.Key}"));
                output.Line($"Devices: {overview.DevicesByStatus.Values.Sum()}{(devices.Length > 0 ? $" ({devices})" : string.Empty)}; pending operations: {overview.PendingOperations}");
                var series = new Table().AddColumns("Last hour", "Total", "Peak/min", "Last 10 minutes (oldest first)");
                foreach (var (name, minutes) in new[] { ("Registrations", overview.Registrations), ("Approvals", overview.Approvals), ("Messages", overview.Messages) })
                {
                    series.AddRow(name, Number(minutes.Counts.Sum()), Number(minutes.Counts.DefaultIfEmpty(0).Max()), string.Join(' ', minutes.Counts.TakeLast(10).Select(Number)));
                }

                output.Console.Write(series);
                if (overview.Outboxes.Count > 0)
                {
                    var outboxes = new Table().AddColumns("Device", "Pending", "Bytes", "Oldest (s)", "Quarantined", "Reported");
                    foreach (var o in overview.Outboxes)
                    {
                        outboxes.AddRow(Markup.Escape(o.DeviceId), Number(o.Pending), Number(o.PendingBytes), o.OldestAgeSeconds is { } age ? age.ToString("0", CultureInfo.InvariantCulture) : "-", Number(o.Quarantined), When(o.ReportedAt));
                    }

                    output.Console.Write(outboxes);
                }
                else
                {
                    output.Line("No device has reported an outbox.");
                }

                if (overview.Refusals.Count > 0)
                {
                    var refusals = new Table().AddColumns("Last", "Kind", "Source", "Reason", "Count");
                    foreach (var r in overview.Refusals)
                    {
                        refusals.AddRow(When(r.At), r.Kind, Markup.Escape(r.Source ?? "-"), Markup.Escape(r.Reason ?? "-"), Number(r.Count));
                    }

                    output.Console.Write(refusals);
                }
                else
                {
                    output.Line("No recent refusals.");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string When(DateTimeOffset at) => at.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
}
