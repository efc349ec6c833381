using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll twin show|set</c>: devices' desired and reported state, for operators (docs/twins.md).</summary>
internal static class TwinCommand
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static Command Create()
    {
        var command = new Command("twin", "Show a device's twin, and change the desired state of one device or a fleet");
        command.Subcommands.Add(Show());
        command.Subcommands.Add(Set());
        return command;
    }

    private static Command Show()
    {
        var device = new Argument<string>("device") { Description = "The Device ID" };
        var json = CliOptions.Json();
        var command = new Command("show", "Show a device's desired and reported documents with their versions") { device, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var twin = await client.GetAsync($"/api/devices/{Uri.EscapeDataString(parse.GetValue(device)!)}/twin", TwinAdminJsonContext.Default.TwinInfo, cancellationToken);
                Print(output, twin, parse.GetValue(json));
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Set()
    {
        var device = new Argument<string?>("device") { Description = "The Device ID (or --org for a fleet)", Arity = ArgumentArity.ZeroOrOne };
        var desired = new Option<string>("--desired") { Description = "A JSON merge patch to the desired document (a member set to null is removed), or @FILE to read it from a file", Required = true };
        var ifVersion = new Option<long?>("--if-version") { Description = "Apply only if the desired version is still N (else exit code 3 and nothing changes)" };
        var org = new Option<string?>("--org") { Description = "Patch every active device of this organisation instead of one device" };
        var where = new Option<string[]>("--where")
        {
            Description = "With --org: only devices where KEY=VALUE, KEY being metadata.NAME or reported.NAME (a dotted path); repeat for several, all must hold",
            AllowMultipleArgumentsPerToken = false,
        };
        var json = CliOptions.Json();
        var command = new Command("set", "Merge a patch into the desired document of a device, or of every device of an organisation that matches") { device, desired, ifVersion, org, where, json };
        command.Validators.Add(result =>
        {
            var hasDevice = result.GetValue(device) is not null;
            var hasOrg = result.GetValue(org) is not null;
            if (hasDevice == hasOrg)
            {
                result.AddError("name either a DEVICE or --org ORG (a fleet)");
            }
            else if (hasDevice && result.GetValue(where) is { Length: > 0 })
            {
                result.AddError("--where selects devices of --org; it cannot be given with a DEVICE");
            }
            else if (hasOrg && result.GetValue(ifVersion) is not null)
            {
                result.AddError("--if-version is for one DEVICE; each device of a fleet has its own version");
            }
            else if (result.GetValue(ifVersion) is < 0)
            {
                result.AddError("--if-version must be 0 or more");
            }
        });
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                var patch = await ReadPatchAsync(parse.GetValue(desired)!, cancellationToken);
                using var client = AdminClient.Create(parse, connection);
                if (parse.GetValue(device) is { } id)
                {
                    var ifMatch = parse.GetValue(ifVersion) is { } v ? v.ToString(CultureInfo.InvariantCulture) : null;
                    var twin = await client.PatchAsync($"/api/devices/{Uri.EscapeDataString(id)}/twin/desired", patch, ifMatch, TwinAdminJsonContext.Default.TwinInfo, cancellationToken);
                    Print(output, twin, parse.GetValue(json));
                    return ExitCodes.Ok;
                }

                var orgId = parse.GetValue(org)!;
                var conditions = parse.GetValue(where) ?? [];
                var query = string.Concat(conditions.Select(c => $"&where={Uri.EscapeDataString(c)}"));
                var result = await client.PatchAsync($"/api/twins/desired?org={Uri.EscapeDataString(orgId)}{query}", patch, null, TwinAdminJsonContext.Default.FleetTwinPatchResult, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(result, TwinAdminJsonContext.Default.FleetTwinPatchResult);
                }
                else
                {
                    var selection = conditions.Length == 0 ? string.Empty : $" where {string.Join(" and ", conditions)}";
                    output.Line(string.Create(CultureInfo.InvariantCulture, $"Patched the desired twin of {result.Touched} device{(result.Touched == 1 ? string.Empty : "s")} of {orgId}{selection}."));
                }

                if (result.Refused > 0)
                {
                    output.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"enroll: warning: {result.Refused} matching device{(result.Refused == 1 ? " was" : "s were")} left unchanged: the patch would take their desired document over the twin limits ({result.Refusal})"));
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    /// <summary>The patch of <c>--desired</c> (the text, or with <c>@FILE</c> the file's content), checked to be a JSON object.</summary>
    private static async Task<string> ReadPatchAsync(string value, CancellationToken cancellationToken)
    {
        var text = value;
        if (value.StartsWith('@'))
        {
            var path = value[1..];
            try
            {
                text = await File.ReadAllTextAsync(path, cancellationToken);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
            {
                throw new CliUsageException($"--desired {value}: cannot read {(path.Length == 0 ? "an empty file name" : Path.GetFullPath(path))}: {ex.Message}");
            }
        }

        try
        {
            if (JsonNode.Parse(text) is JsonObject)
            {
                return text;
            }
        }
        catch (JsonException ex)
        {
            throw new CliUsageException($"--desired is not JSON: {ex.Message}");
        }

        throw new CliUsageException("--desired must be a JSON object, a merge patch such as {\"interval\": 30, \"old\": null}");
    }

    private static void Print(Output output, TwinInfo twin, bool json)
    {
        if (json)
        {
            output.Json(twin, TwinAdminJsonContext.Default.TwinInfo);
            return;
        }

        output.Line($"Device ID:         {twin.DeviceId}");
        output.Line(string.Create(CultureInfo.InvariantCulture, $"Desired version:   {twin.DesiredVersion}"));
        output.Line($"Desired:           {Indent(twin.Desired)}");
        output.Line(string.Create(CultureInfo.InvariantCulture, $"Reported version:  {twin.ReportedVersion}"));
        output.Line($"Reported:          {Indent(twin.Reported)}");
        output.Line($"Updated:           {(twin.UpdatedAt is { } at ? DeviceCommand.Format(at) : "never")}");
    }

    private static string Indent(JsonObject? document) =>
        (document ?? []).ToJsonString(Indented).Replace("\n", "\n                   ", StringComparison.Ordinal);
}
