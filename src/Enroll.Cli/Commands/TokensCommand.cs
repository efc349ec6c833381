using System.CommandLine;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll tokens create|list|revoke</c>: Provisioning Tokens through the server's HTTP API.</summary>
internal static class TokensCommand
{
    public static Command Create()
    {
        var command = new Command("tokens", "Create, list and revoke Provisioning Tokens");
        command.Subcommands.Add(CreateToken());
        command.Subcommands.Add(ListTokens());
        command.Subcommands.Add(RevokeToken());
        return command;
    }

    private static Command CreateToken()
    {
        var org = new Option<string>("--org") { Description = "Organisation the devices join", Required = true };
        var autoApprove = new Option<bool>("--auto-approve") { Description = "Approve devices at once, without an operator" };
        var expires = CliOptions.OptionalDuration("--expires", "Stop accepting the token after this long");
        var maxUses = new Option<int?>("--max-uses") { Description = "How many new devices may use the token" };
        var description = new Option<string?>("--description") { Description = "A note for operators" };
        var registrationLifetime = CliOptions.OptionalDuration("--registration-token-lifetime", "Lifetime of Registration Tokens issued through this token");
        var json = CliOptions.Json();
        var command = new Command("create", "Create a Provisioning Token; its secret is shown once") { org, autoApprove, expires, maxUses, description, registrationLifetime, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            var request = new CreateProvisioningTokenRequest
            {
                OrgId = parse.GetValue(org),
                AutoApprove = parse.GetValue(autoApprove),
                ExpiresAt = parse.GetOptionalDuration(expires) is { } after ? TimeProvider.System.GetUtcNow() + after : null,
                MaxUses = parse.GetValue(maxUses),
                Description = parse.GetValue(description),
                RegistrationTokenLifetimeSeconds = parse.GetOptionalDuration(registrationLifetime) is { } lifetime ? (long)lifetime.TotalSeconds : null,
            };
            return await Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var token = await client.PostAsync("/api/tokens", request, AdminJsonContext.Default.CreateProvisioningTokenRequest, AdminJsonContext.Default.ProvisioningTokenInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(token, AdminJsonContext.Default.ProvisioningTokenInfo);
                }
                else
                {
                    output.Line($"Created provisioning token {token.Id} for organisation {token.OrgId}" +
                        $"{(token.AutoApprove ? ", auto-approve" : ", operator approval required")}" +
                        $"{(token.MaxUses is { } m ? $", up to {m} devices" : string.Empty)}" +
                        $"{(token.ExpiresAt is { } e ? $", expires {e:yyyy-MM-dd HH:mm} UTC" : string.Empty)}.");
                    output.Line(string.Empty);
                    output.Line($"  {token.Token}");
                    output.Line(string.Empty);
                    output.Line("This secret is shown only now; give it to your devices (enroll device register --token ...).");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command ListTokens()
    {
        var json = CliOptions.Json();
        var command = new Command("list", "List Provisioning Tokens (without their secrets)") { json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var list = await client.GetAsync("/api/tokens", AdminJsonContext.Default.ItemListProvisioningTokenInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(list, AdminJsonContext.Default.ItemListProvisioningTokenInfo);
                    return ExitCodes.Ok;
                }

                if (list.Items.Count == 0)
                {
                    output.Line("No provisioning tokens. Create one with: enroll tokens create --org ORG [--auto-approve]");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("ID", "Org", "Approval", "Uses", "Status", "Expires", "Created", "Description");
                foreach (var t in list.Items)
                {
                    table.AddRow(
                        t.Id,
                        Markup.Escape(t.OrgId),
                        t.AutoApprove ? "auto" : "operator",
                        t.MaxUses is { } max ? $"{t.Uses}/{max}" : t.Uses.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        t.Status,
                        t.ExpiresAt?.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture) ?? "never",
                        t.CreatedAt.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture),
                        Markup.Escape(t.Description ?? string.Empty));
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command RevokeToken()
    {
        var id = new Argument<string>("id") { Description = "The token's ID (from enroll tokens list)" };
        var json = CliOptions.Json();
        var command = new Command("revoke", "Revoke a Provisioning Token: no new operations; devices already set up keep working") { id, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var token = await client.PostAsync($"/api/tokens/{Uri.EscapeDataString(parse.GetValue(id)!)}/revoke", AdminJsonContext.Default.ProvisioningTokenInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(token, AdminJsonContext.Default.ProvisioningTokenInfo);
                }
                else
                {
                    output.Line($"Revoked provisioning token {token.Id}. Devices already registered with it keep working.");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    /// <summary>Runs an admin API action, turning any failure into one line on standard error and an exit code.</summary>
    internal static async Task<int> Run(Output output, Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return output.Fail(ex);
        }
    }
}
