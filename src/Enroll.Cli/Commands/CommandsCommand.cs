using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll commands send|list|show|cancel</c>: commands for devices through the server's HTTP API (docs/commands.md).</summary>
internal static class CommandsCommand
{
    public static Command Create()
    {
        var command = new Command("commands", "Send commands to devices, follow and cancel them");
        command.Subcommands.Add(Send());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Show());
        command.Subcommands.Add(Cancel());
        return command;
    }

    private static Command Send()
    {
        var device = new Argument<string>("device") { Description = "The Device ID (with --org, the command's name instead)" };
        var name = new Argument<string?>("name") { Description = "The command's name (the device's handler)", Arity = ArgumentArity.ZeroOrOne };
        var payload = new Option<string?>("--payload") { Description = "The command's input, as JSON (at most 64 KiB)" };
        var ttl = new Option<string?>("--ttl") { Description = "How long the command stays deliverable: 1s to 7d (default 1h)" };
        var wait = new Option<string?>("--wait") { Description = "Wait this long (at most 5m) for the result; the exit code then says whether the command succeeded" };
        var org = new Option<string?>("--org") { Description = "Send to every active device of this organisation (a fleet command): enroll commands send --org ORG [--where K=V] NAME --rate 100/min" };
        var where = new Option<string[]>("--where") { Description = "With --org: only devices with this value, as metadata.NAME=VALUE or reported.NAME=VALUE (repeat for more; all must match)" };
        var rate = new Option<string?>("--rate") { Description = "With --org: devices per minute, as 100/min, 5/s or 100 (default 60/min)" };
        var json = CliOptions.Json();
        var command = new Command("send", "Send a command to a device (delivered at once when it is connected, else when it next connects), or with --org to a fleet at a rate")
        {
            device, name, payload, ttl, wait, org, where, rate, json,
        };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            JsonNode? input = null;
            if (parse.GetValue(payload) is { } text)
            {
                try
                {
                    input = JsonNode.Parse(text);
                }
                catch (JsonException ex)
                {
                    return output.Fail(ExitCodes.Usage, $"--payload is not JSON: {ex.Message} (see enroll commands send --help)");
                }

                if (CommandLimits.CheckPayload(input) is { } tooLarge)
                {
                    return output.Fail(ExitCodes.Usage, $"--payload: {tooLarge}");
                }
            }

            if (parse.GetValue(ttl) is { } ttlText && (!CommandLimits.TryParseDuration(ttlText, out var lifetime) || CommandLimits.CheckTtl(lifetime) is not null))
            {
                return output.Fail(ExitCodes.Usage, $"--ttl '{ttlText}' is not a duration from 1s to 7d (write it like 30s, 15m, 1h, 7d)");
            }

            var ttlElement = parse.GetValue(ttl) is { } given ? JsonSerializer.SerializeToElement(given, CommandJsonContext.Default.String) : (JsonElement?)null;
            if (parse.GetValue(org) is { } orgId)
            {
                if (parse.GetValue(name) is not null || parse.GetValue(wait) is not null)
                {
                    return output.Fail(ExitCodes.Usage, "with --org give only the command's name (no DEVICE) and no --wait (see enroll commands send --help)");
                }

                return await SendToFleetAsync(parse, output, connection, orgId, parse.GetValue(device)!, input, ttlElement, parse.GetValue(where) ?? [], parse.GetValue(rate), parse.GetValue(json), cancellationToken);
            }

            if (parse.GetValue(name) is null)
            {
                return output.Fail(ExitCodes.Usage, "give the Device ID and the command's name: enroll commands send DEVICE NAME (see enroll commands send --help)");
            }

            if (parse.GetValue(where) is { Length: > 0 } || parse.GetValue(rate) is not null)
            {
                return output.Fail(ExitCodes.Usage, "--where and --rate go with --org (see enroll commands send --help)");
            }

            var waitFor = TimeSpan.Zero;
            if (parse.GetValue(wait) is { } waitText && (!CommandLimits.TryParseDuration(waitText, out waitFor) || waitFor <= TimeSpan.Zero || waitFor > CommandLimits.MaxWait))
            {
                return output.Fail(ExitCodes.Usage, $"--wait '{waitText}' is not a duration up to 5m (write it like 30s or 2m)");
            }

            var deviceId = parse.GetValue(device)!;
            var request = new SendCommandRequest { Name = parse.GetValue(name), Payload = input, Ttl = ttlElement };
            return await TokensCommand.Run(output, async () =>
            {
                // The HTTP call lasts as long as the server waits, and a little more.
                using var client = AdminClient.Create(parse, connection, waitFor + TimeSpan.FromSeconds(30));
                var path = $"/api/devices/{Uri.EscapeDataString(deviceId)}/commands"
                    + (waitFor > TimeSpan.Zero ? $"?wait={(long)Math.Ceiling(waitFor.TotalSeconds)}" : string.Empty);
                var sent = await client.PostAsync(path, request, CommandJsonContext.Default.SendCommandRequest, CommandJsonContext.Default.CommandInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(sent, CommandJsonContext.Default.CommandInfo);
                }

                if (waitFor == TimeSpan.Zero)
                {
                    if (!parse.GetValue(json))
                    {
                        output.Line($"Command {sent.CommandId} ({sent.Name}) for device {sent.DeviceId} is {sent.State}, until {Time(sent.ExpiresAt)}. Follow it with: enroll commands show {sent.CommandId}");
                    }

                    return ExitCodes.Ok;
                }

                return Finished(output, sent, waitFor, printed: parse.GetValue(json));
            });
        });
        return command;
    }

    /// <summary>How often <c>send --org</c> asks how the rollout stands.</summary>
    internal static TimeSpan ProgressInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// <c>send --org</c>: creates the rollout, then prints a progress line whenever its counts change until it is done;
    /// exits 0 when every targeted device's command succeeded, 7 otherwise.
    /// </summary>
    private static async Task<int> SendToFleetAsync(
        ParseResult parse,
        Output output,
        (Option<string> Server, Option<string?> Key, Option<string> DataDir) connection,
        string orgId,
        string name,
        JsonNode? input,
        JsonElement? ttl,
        string[] where,
        string? rateText,
        bool json,
        CancellationToken cancellationToken)
    {
        var filter = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var condition in where)
        {
            var equals = condition.IndexOf('=', StringComparison.Ordinal);
            if (equals < 1)
            {
                return output.Fail(ExitCodes.Usage, $"--where '{condition}' is not KEY=VALUE, such as metadata.site=north or reported.fw=1.2");
            }

            filter[condition[..equals]] = condition[(equals + 1)..];
        }

        int? perMinute = null;
        if (rateText is not null)
        {
            if (!TryParseRate(rateText, out var parsed))
            {
                return output.Fail(ExitCodes.Usage, $"--rate '{rateText}' is not a rate such as 100/min, 5/s or 100 (devices a minute)");
            }

            perMinute = parsed;
        }

        var request = new CreateRolloutRequest { Org = orgId, Where = filter, Name = name, Payload = input, Ttl = ttl, RatePerMinute = perMinute };
        return await TokensCommand.Run(output, async () =>
        {
            using var client = AdminClient.Create(parse, connection);
            var rollout = await client.PostAsync("/api/commands/rollouts", request, CommandJsonContext.Default.CreateRolloutRequest, CommandJsonContext.Default.RolloutInfo, cancellationToken);
            if (!json)
            {
                output.Line($"Rollout {rollout.RolloutId}: {name} to {rollout.Total} devices of {orgId} at {rollout.RatePerMinute}/min");
            }

            var last = string.Empty;
            while (true)
            {
                var line = Progress(rollout);
                if (!json && line != last)
                {
                    output.Line(line);
                    last = line;
                }

                if (rollout.Done == true)
                {
                    break;
                }

                await Task.Delay(ProgressInterval, cancellationToken);
                rollout = await client.GetAsync($"/api/commands/rollouts/{Uri.EscapeDataString(rollout.RolloutId!)}", CommandJsonContext.Default.RolloutInfo, cancellationToken);
            }

            if (json)
            {
                output.Json(rollout, CommandJsonContext.Default.RolloutInfo);
            }

            var succeeded = rollout.States?.GetValueOrDefault(CommandStatuses.Succeeded) ?? 0;
            return succeeded == rollout.Total
                ? ExitCodes.Ok
                : output.Fail(ExitCodes.CommandNotSucceeded, $"rollout {rollout.RolloutId} done: {succeeded} of {rollout.Total} devices succeeded ({Progress(rollout)})");
        });
    }

    private static string Progress(RolloutInfo rollout)
    {
        var parts = new List<string> { $"{rollout.Waiting} waiting" };
        parts.AddRange(CommandStatuses.All
            .Where(s => rollout.States?.GetValueOrDefault(s) is > 0)
            .Select(s => $"{rollout.States![s]} {s}"));
        if (rollout.Refused is > 0)
        {
            parts.Add($"{rollout.Refused} refused (100 outstanding)");
        }

        return $"{rollout.Total - rollout.Waiting}/{rollout.Total} queued: {string.Join(", ", parts)}";
    }

    /// <summary>A rate as devices a minute: <c>100</c>, <c>100/min</c>, <c>100/m</c>, <c>5/s</c>, <c>600/h</c>.</summary>
    internal static bool TryParseRate(string text, out int perMinute)
    {
        perMinute = 0;
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var number = slash < 0 ? text : text[..slash];
        var unit = slash < 0 ? "min" : text[(slash + 1)..].Trim().ToLowerInvariant();
        if (!double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var amount) || amount <= 0)
        {
            return false;
        }

        double? minutes = unit switch
        {
            "min" or "m" => amount,
            "s" or "sec" => amount * 60,
            "h" => amount / 60,
            _ => null,
        };
        if (minutes is not { } value || value < 1 || value > 1_000_000)
        {
            return false;
        }

        perMinute = (int)Math.Round(value);
        return true;
    }

    /// <summary>The exit code of a waited-for command: 0 when it succeeded (its result printed), else one line saying how it ended.</summary>
    private static int Finished(Output output, CommandInfo command, TimeSpan waited, bool printed)
    {
        switch (command.State)
        {
            case CommandStatuses.Succeeded:
                if (!printed)
                {
                    output.Line(command.Result?.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) ?? command.Message ?? "succeeded");
                }

                return ExitCodes.Ok;
            case CommandStatuses.Queued or CommandStatuses.Sent:
                return output.Fail(ExitCodes.Unreachable, $"no result from device {command.DeviceId} within {Format(waited)}; command {command.CommandId} is {command.State} until {Time(command.ExpiresAt)} (follow it with: enroll commands show {command.CommandId})");
            default:
                return output.Fail(ExitCodes.CommandNotSucceeded, $"command {command.CommandId} {command.State}{(command.Message is { } message ? $": {message}" : string.Empty)}");
        }
    }

    private static Command List()
    {
        var device = new Option<string?>("--device") { Description = "Only this device's commands" };
        var status = new Option<string?>("--status") { Description = $"Only commands in this state: {string.Join(", ", CommandStatuses.All)}" };
        status.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is { } value && !CommandStatuses.All.Contains(value))
            {
                result.AddError($"--status must be one of {string.Join(", ", CommandStatuses.All)}");
            }
        });
        var json = CliOptions.Json();
        var command = new Command("list", "List commands in the order they were sent") { device, status, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var query = string.Join('&', new[] { ("device", parse.GetValue(device)), ("state", parse.GetValue(status)) }
                    .Where(p => p.Item2 is not null)
                    .Select(p => $"{p.Item1}={Uri.EscapeDataString(p.Item2!)}"));
                var items = await client.GetAllAsync("/api/commands" + (query.Length > 0 ? "?" + query : string.Empty), CommandJsonContext.Default.CommandInfo, output.Error, "commands", cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(new ItemList<CommandInfo>(items), CommandJsonContext.Default.ItemListCommandInfo);
                    return ExitCodes.Ok;
                }

                if (items.Count == 0)
                {
                    output.Line("No commands. Send one with: enroll commands send DEVICE NAME [--payload JSON] [--wait 30s]");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("ID", "Device", "Name", "State", "Created", "Expires", "Finished");
                foreach (var c in items)
                {
                    table.AddRow(c.CommandId ?? string.Empty, c.DeviceId ?? string.Empty, Markup.Escape(c.Name ?? string.Empty), c.State ?? string.Empty, Time(c.CreatedAt), Time(c.ExpiresAt), Time(c.FinishedAt));
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Show()
    {
        var id = new Argument<string>("id") { Description = "The command's ID" };
        var json = CliOptions.Json();
        var command = new Command("show", "Show a command: its state, and its result once the device answered") { id, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var shown = await client.GetAsync($"/api/commands/{Uri.EscapeDataString(parse.GetValue(id)!)}", CommandJsonContext.Default.CommandInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(shown, CommandJsonContext.Default.CommandInfo);
                    return ExitCodes.Ok;
                }

                output.Line($"Command {shown.CommandId} ({shown.Name}) for device {shown.DeviceId}: {shown.State}");
                output.Line($"  created  {Time(shown.CreatedAt)}, expires {Time(shown.ExpiresAt)}");
                if (shown.SentAt is { } sentAt)
                {
                    output.Line($"  sent     {Time(sentAt)}");
                }

                if (shown.FinishedAt is { } finishedAt)
                {
                    output.Line($"  finished {Time(finishedAt)}");
                }

                if (shown.Payload is { } input)
                {
                    output.Line($"  payload  {input.ToJsonString()}");
                }

                if (shown.Result is { } result)
                {
                    output.Line($"  result   {result.ToJsonString()}");
                }

                if (shown.Message is { } message)
                {
                    output.Line($"  message  {message}");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Cancel()
    {
        var id = new Argument<string>("id") { Description = "The command's ID" };
        var json = CliOptions.Json();
        var command = new Command("cancel", "Cancel a command that is queued or sent; a finished one is refused") { id, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var canceled = await client.PostAsync($"/api/commands/{Uri.EscapeDataString(parse.GetValue(id)!)}/cancel", CommandJsonContext.Default.CommandInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(canceled, CommandJsonContext.Default.CommandInfo);
                }
                else
                {
                    output.Line($"Canceled command {canceled.CommandId}; the device will not be sent it again (one that already has it may still run it).");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static string Time(DateTimeOffset? at) => at?.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) ?? "-";

    private static string Format(TimeSpan value) => Durations.Format(value);
}
