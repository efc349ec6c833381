using System.CommandLine;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary>
/// <c>enroll operators add|list|remove</c> (operator accounts, admin key only) and <c>enroll audit</c> (the audit log)
/// through the server's HTTP API.
/// </summary>
internal static class OperatorsCommand
{
    public static Command Create()
    {
        var command = new Command("operators", "Add, list and remove operator accounts (each signs in to the console and uses the API with its own key)");
        command.Subcommands.Add(Add());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Remove());
        return command;
    }

    private static Command Add()
    {
        var name = new Argument<string>("name") { Description = "The operator's name: a lower-case letter, then 1 to 63 of a-z 0-9 . _ -" };
        var json = CliOptions.Json();
        var command = new Command("add", "Add an operator; its key is shown once") { name, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var created = await client.PostAsync("/api/operators", new CreateOperatorRequest { Name = parse.GetValue(name)! }, OperatorJsonContext.Default.CreateOperatorRequest, OperatorJsonContext.Default.CreatedOperator, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(created, OperatorJsonContext.Default.CreatedOperator);
                }
                else
                {
                    output.Line($"Added operator {created.Operator.Name}. Its key:");
                    output.Line(string.Empty);
                    output.Line($"  {created.Key}");
                    output.Line(string.Empty);
                    output.Line("This key is shown only now and cannot be shown again; give it to the operator (console sign-in, or ENROLL_ADMIN_KEY for the CLI).");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command List()
    {
        var json = CliOptions.Json();
        var command = new Command("list", "List operator accounts (removed ones too)") { json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var list = await client.GetAsync("/api/operators", OperatorJsonContext.Default.ItemListOperatorInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(list, OperatorJsonContext.Default.ItemListOperatorInfo);
                    return ExitCodes.Ok;
                }

                if (list.Items.Count == 0)
                {
                    output.Line("No operators. Add one with: enroll operators add NAME");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("Name", "Created", "By", "Status");
                foreach (var o in list.Items)
                {
                    table.AddRow(
                        Markup.Escape(o.Name),
                        o.CreatedAt.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture),
                        Markup.Escape(o.CreatedBy ?? "-"),
                        o.RemovedAt is { } removed ? "removed " + removed.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture) : "active");
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Remove()
    {
        var name = new Argument<string>("name") { Description = "The operator's name" };
        var json = CliOptions.Json();
        var command = new Command("remove", "Remove an operator: its key and console sessions stop working at once") { name, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var removed = await client.DeleteAsync($"/api/operators/{Uri.EscapeDataString(parse.GetValue(name)!)}", OperatorJsonContext.Default.OperatorInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(removed, OperatorJsonContext.Default.OperatorInfo);
                }
                else
                {
                    output.Line($"Removed operator {removed.Name}; its key and sessions no longer work.");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    /// <summary><c>enroll audit</c>: the newest entries of the audit log.</summary>
    public static Command Audit()
    {
        var limit = new Option<int>("--limit") { Description = "How many entries, newest first (1 to 1000)", DefaultValueFactory = _ => 50 };
        var who = new Option<string?>("--operator") { Description = "Only this operator's actions (admin, a name, or - for failed sign-ins)" };
        var action = new Option<string?>("--action") { Description = "Only this action (token.create, operation.approve, session.sign_in, ...)" };
        var before = new Option<long?>("--before") { Description = "Only entries older than this ID (the next page)" };
        var json = CliOptions.Json();
        var command = new Command("audit", "Show the audit log: who did what, when, from where") { limit, who, action, before, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var query = string.Join('&', new[]
                    {
                        ("limit", (string?)parse.GetValue(limit).ToString(System.Globalization.CultureInfo.InvariantCulture)),
                        ("operator", parse.GetValue(who)),
                        ("action", parse.GetValue(action)),
                        ("before", parse.GetValue(before)?.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                    }
                    .Where(p => p.Item2 is not null)
                    .Select(p => $"{p.Item1}={Uri.EscapeDataString(p.Item2!)}"));
                var list = await client.GetAsync("/api/audit?" + query, OperatorJsonContext.Default.ItemListAuditEntry, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(list, OperatorJsonContext.Default.ItemListAuditEntry);
                    return ExitCodes.Ok;
                }

                if (list.Items.Count == 0)
                {
                    output.Line("No audit entries.");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("ID", "At (UTC)", "Operator", "Action", "Target", "From", "Status", "Detail");
                foreach (var e in list.Items)
                {
                    table.AddRow(
                        e.Id.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        e.At.ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture),
                        Markup.Escape(e.Operator),
                        Markup.Escape(e.Action),
                        Markup.Escape(e.Target ?? string.Empty),
                        Markup.Escape(e.Remote ?? string.Empty),
                        e.Status.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        Markup.Escape(e.Detail ?? string.Empty));
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }
}
