using System.CommandLine;
using System.Globalization;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll keys list|rotate</c>: the server's signing keys.</summary>
internal static class KeysCommand
{
    public static Command Create()
    {
        var command = new Command("keys", "List and rotate the server's signing and encryption keys");
        command.Subcommands.Add(Keys("list", "List the keys in the published key set (JWKS)", "/api/keys", post: false));
        command.Subcommands.Add(Keys("rotate", "Make a new signing key and a new encryption key current; the previous ones stay valid until rotated out", "/api/keys/rotate", post: true));
        return command;
    }

    private static Command Keys(string name, string description, string path, bool post)
    {
        var json = CliOptions.Json();
        var command = new Command(name, description) { json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var keys = post
                    ? await client.PostAsync(path, AdminJsonContext.Default.ItemListServerKeyInfo, cancellationToken)
                    : await client.GetAsync(path, AdminJsonContext.Default.ItemListServerKeyInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(keys, AdminJsonContext.Default.ItemListServerKeyInfo);
                    return ExitCodes.Ok;
                }

                if (post)
                {
                    output.Line($"Rotated: {keys.Items.First(k => k.Current).Kid} now signs new tokens.");
                }

                var table = new Table().AddColumns("Key ID", "Use", "Current", "Created");
                foreach (var key in keys.Items)
                {
                    table.AddRow(key.Kid, key.Use, key.Current ? "yes" : string.Empty, key.CreatedAt.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture));
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }
}
