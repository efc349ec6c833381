using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll devices list|show|revoke</c>: the registry, for operators.</summary>
internal static class DevicesCommand
{
    public static Command Create()
    {
        var command = new Command("devices", "List, show and revoke registered devices");
        command.Subcommands.Add(List());
        command.Subcommands.Add(Show());
        command.Subcommands.Add(Revoke());
        return command;
    }

    private static Command List()
    {
        var org = new Option<string?>("--org") { Description = "Only this organisation's devices" };
        var json = CliOptions.Json();
        var command = new Command("list", "List registered devices") { org, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var query = parse.GetValue(org) is { } o ? $"?org={Uri.EscapeDataString(o)}" : string.Empty;
                var list = new ItemList<DeviceInfo>(await client.GetAllAsync($"/api/devices{query}", AdminJsonContext.Default.DeviceInfo, output.Error, "devices", cancellationToken));
                if (parse.GetValue(json))
                {
                    output.Json(list, AdminJsonContext.Default.ItemListDeviceInfo);
                    return ExitCodes.Ok;
                }

                if (list.Items.Count == 0)
                {
                    output.Line("No devices yet.");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("Device", "Status", "Org", "Client", "Name", "Last registered");
                foreach (var d in list.Items)
                {
                    table.AddRow(
                        d.DeviceId,
                        d.Status,
                        Markup.Escape(d.OrgId),
                        Markup.Escape(d.ClientId),
                        Markup.Escape(d.DeviceName ?? string.Empty),
                        d.LastRegisteredAt?.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture) ?? "-");
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Show()
    {
        var id = new Argument<string>("id") { Description = "The Device ID" };
        var json = CliOptions.Json();
        var command = new Command("show", "Show one device with its metadata") { id, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var device = await client.GetAsync($"/api/devices/{Uri.EscapeDataString(parse.GetValue(id)!)}", AdminJsonContext.Default.DeviceInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(device, AdminJsonContext.Default.DeviceInfo);
                    return ExitCodes.Ok;
                }

                output.Line($"Device ID:        {device.DeviceId}");
                output.Line($"Status:           {device.Status}{(device.RevokedAt is { } r ? $" (since {DeviceCommand.Format(r)})" : string.Empty)}");
                output.Line($"Organisation:     {device.OrgId}");
                output.Line($"Client ID:        {device.ClientId}");
                output.Line($"Name:             {device.DeviceName ?? "-"}");
                output.Line($"Joined with:      {device.ProvisioningTokenId ?? "-"}");
                output.Line($"Created:          {DeviceCommand.Format(device.CreatedAt)}");
                output.Line($"Last registered:  {(device.LastRegisteredAt is { } at ? DeviceCommand.Format(at) : "-")}");
                if (device.Metadata is { Count: > 0 } metadata)
                {
                    output.Line("Metadata:");
                    foreach (var (key, value) in metadata.OrderBy(m => m.Key, StringComparer.Ordinal))
                    {
                        output.Line($"  {key,-22} {(value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText())}");
                    }
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Revoke()
    {
        var id = new Argument<string>("id") { Description = "The Device ID" };
        var json = CliOptions.Json();
        var command = new Command("revoke", "Disable a device: its Registration and access tokens stop working at once") { id, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var device = await client.PostAsync($"/api/devices/{Uri.EscapeDataString(parse.GetValue(id)!)}/revoke", AdminJsonContext.Default.DeviceInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(device, AdminJsonContext.Default.DeviceInfo);
                }
                else
                {
                    output.Line($"Revoked {device.DeviceId}: its tokens no longer work. It can come back only through a provisioning operation an operator approves.");
                    if (device.Disconnect == "not_supported_by_external_broker")
                    {
                        output.Error.WriteLine($"warning: the server cannot end {device.DeviceId}'s open session on the external broker; it stays connected until it disconnects, and its next CONNECT is refused only if the broker checks access tokens (docs/operations.md, section 4).");
                    }
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }
}
