using System.CommandLine;
using System.Globalization;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll ops list|approve|reject</c>: operator decisions on provisioning operations.</summary>
internal static class OpsCommand
{
    public static Command Create()
    {
        var command = new Command("ops", "List, approve and reject provisioning operations");
        command.Subcommands.Add(List());
        command.Subcommands.Add(Decide("approve", "Approve a pending operation: the device gets its Device ID and Registration Token", approve: true));
        command.Subcommands.Add(Decide("reject", "Reject a pending operation: the device is told at once and stops asking", approve: false));
        return command;
    }

    private static Command List()
    {
        var status = new Option<string>("--status") { Description = "pending, approved, rejected, expired, completed or all", DefaultValueFactory = _ => "pending" };
        status.AcceptOnlyFromAmong("pending", "approved", "rejected", "expired", "completed", "all");
        var json = CliOptions.Json();
        var command = new Command("list", "List provisioning operations (pending ones by default)") { status, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var list = new ItemList<ProvisioningOperationInfo>(await client.GetAllAsync($"/api/provisioning-operations?status={parse.GetValue(status)}", AdminJsonContext.Default.ProvisioningOperationInfo, output.Error, "operations", cancellationToken));
                if (parse.GetValue(json))
                {
                    output.Json(list, AdminJsonContext.Default.ItemListProvisioningOperationInfo);
                    return ExitCodes.Ok;
                }

                if (list.Items.Count == 0)
                {
                    output.Line($"No {(parse.GetValue(status) == "all" ? string.Empty : parse.GetValue(status) + " ")}provisioning operations.");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("Operation", "Status", "Org", "Client", "Device", "Name", "Created", "Expires");
                foreach (var op in list.Items)
                {
                    var device = op.ReprovisionOf is { } again ? $"{again} (re-provisioning)" : op.DeviceId ?? (op.DesiredDeviceId is { } desired ? $"{desired} (desired)" : "-");
                    table.AddRow(
                        op.OperationId,
                        op.Status,
                        Markup.Escape(op.OrgId),
                        Markup.Escape(op.ClientId),
                        Markup.Escape(device),
                        Markup.Escape(op.DeviceName ?? string.Empty),
                        op.CreatedAt.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture),
                        op.ExpiresAt.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture));
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Decide(string name, string description, bool approve)
    {
        var id = new Argument<string?>("id") { Description = "The operation's ID (from enroll ops list); or, without it, --org/--token/--where for every pending operation they match", Arity = ArgumentArity.ZeroOrOne };
        var reason = new Option<string?>("--reason") { Description = approve ? "A note kept with the decision" : "Why, shown to the device (required)" };
        var org = new Option<string?>("--org") { Description = "Bulk: the pending operations of this organisation" };
        var token = new Option<string?>("--token") { Description = "Bulk: the pending operations of this Provisioning Token ID" };
        var where = new Option<string[]>("--where") { Description = "Bulk: a metadata member that must be equal, KEY=VALUE (repeatable)", AllowMultipleArgumentsPerToken = false };
        var yes = new Option<bool>("--yes") { Description = "Bulk: decide without asking for confirmation" };
        var json = CliOptions.Json();
        var command = new Command(name, description) { id, reason, org, token, where, yes, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            if (!approve && parse.GetValue(reason) is null)
            {
                return output.Fail(ExitCodes.Usage, "--reason is required to reject (it is shown to the device)");
            }

            var bulk = parse.GetValue(org) is not null || parse.GetValue(token) is not null || parse.GetValue(where) is { Length: > 0 };
            if (bulk == (parse.GetValue(id) is not null))
            {
                return output.Fail(ExitCodes.Usage, "give either an operation ID or a filter (--org, --token, --where KEY=VALUE), not both");
            }

            if (bulk)
            {
                return await DecideBulkAsync(parse, connection, output, name, new OperationFilter
                {
                    OrgId = parse.GetValue(org),
                    ProvisioningTokenId = parse.GetValue(token),
                    Metadata = parse.GetValue(where) is { Length: > 0 } pairs ? Pairs(pairs) : null,
                }, parse.GetValue(reason), parse.GetValue(yes), parse.GetValue(json), cancellationToken);
            }

            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var op = await client.PostAsync(
                    $"/api/provisioning-operations/{Uri.EscapeDataString(parse.GetValue(id)!)}/{name}",
                    new OperationDecisionRequest { Reason = parse.GetValue(reason) },
                    AdminJsonContext.Default.OperationDecisionRequest,
                    AdminJsonContext.Default.ProvisioningOperationInfo,
                    cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(op, AdminJsonContext.Default.ProvisioningOperationInfo);
                }
                else if (approve)
                {
                    output.Line($"Approved {op.OperationId}: client {op.ClientId} becomes device {op.DeviceId}{(op.ReprovisionOf is null ? string.Empty : " again")}.");
                }
                else
                {
                    output.Line($"Rejected {op.OperationId} (client {op.ClientId}).");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    /// <summary>The bulk form: counts what the filter matches (a dry run), asks for confirmation unless <c>--yes</c>, then decides.</summary>
    private static Task<int> DecideBulkAsync(ParseResult parse, (Option<string> Server, Option<string?> Key, Option<string> DataDir) connection, Output output, string action, OperationFilter filter, string? reason, bool yes, bool json, CancellationToken cancellationToken) =>
        TokensCommand.Run(output, async () =>
        {
            using var client = AdminClient.Create(parse, connection);
            var dry = await client.PostAsync("/api/provisioning-operations/bulk", new BulkDecisionRequest { Action = action, Filter = filter, Reason = reason, DryRun = true }, ConsoleJsonContext.Default.BulkDecisionRequest, ConsoleJsonContext.Default.BulkDecisionResult, cancellationToken);
            if (dry.Matched == 0)
            {
                output.Line("No pending operations match.");
                return ExitCodes.Ok;
            }

            if (!yes)
            {
                output.Line($"This will {action} {dry.Matched} pending operation{(dry.Matched == 1 ? string.Empty : "s")}. Continue? [y/N]");
                var answer = System.Console.In.ReadLine()?.Trim();
                if (answer is not ("y" or "Y" or "yes"))
                {
                    output.Line("Nothing decided.");
                    return ExitCodes.Refused;
                }
            }

            var done = await client.PostAsync("/api/provisioning-operations/bulk", new BulkDecisionRequest { Action = action, Filter = filter, Reason = reason }, ConsoleJsonContext.Default.BulkDecisionRequest, ConsoleJsonContext.Default.BulkDecisionResult, cancellationToken);
            if (json)
            {
                output.Json(done, ConsoleJsonContext.Default.BulkDecisionResult);
            }
            else
            {
                output.Line($"{(action == "approve" ? "Approved" : "Rejected")} {done.Decided} of {done.Matched} matching operations{(done.Decided < done.Matched ? " (the others were decided meanwhile or expired)" : string.Empty)}.");
            }

            return ExitCodes.Ok;
        });

    private static Dictionary<string, string> Pairs(string[] pairs)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw new ArgumentException($"--where takes KEY=VALUE, not '{pair}'");
            }

            metadata[pair[..equals]] = pair[(equals + 1)..];
        }

        return metadata;
    }
}
