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
        var id = new Argument<string>("id") { Description = "The operation's ID (from enroll ops list)" };
        var reason = new Option<string?>("--reason") { Description = approve ? "A note kept with the decision" : "Why, shown to the device", Required = !approve };
        var json = CliOptions.Json();
        var command = new Command(name, description) { id, reason, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
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
}
