using System.CommandLine;
using System.Globalization;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll messages tail</c>: the messages devices sent, newest last.</summary>
internal static class MessagesCommand
{
    public static Command Create()
    {
        var command = new Command("messages", "Read the messages devices sent");
        command.Subcommands.Add(Tail());
        return command;
    }

    private static Command Tail()
    {
        var device = new Option<string?>("--device") { Description = "Only this device's messages" };
        var limit = new Option<int>("--limit", "-n") { Description = $"How many recent messages to show first (1 to {AdminClient.PageSize})", DefaultValueFactory = _ => 20 };
        limit.Validators.Add(result =>
        {
            // The server answers at most PageSize messages; a larger limit must not be cut short without a word.
            if (result.Tokens.Count > 0 && int.TryParse(result.Tokens[0].Value, CultureInfo.InvariantCulture, out var n) && n is < 1 or > AdminClient.PageSize)
            {
                result.AddError($"--limit: {result.Tokens[0].Value} is out of range; the server returns at most {AdminClient.PageSize} recent messages (1 to {AdminClient.PageSize}; --follow then prints every new one)");
            }
        });
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new messages until Ctrl+C" };
        var json = CliOptions.Json();
        var command = new Command("tail", "Show the most recent messages (one JSON object per line with --json)") { device, limit, follow, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var filter = parse.GetValue(device) is { } id ? $"&device={Uri.EscapeDataString(id)}" : string.Empty;
                var page = await client.GetAsync($"/api/messages?limit={parse.GetValue(limit)}{filter}", AdminJsonContext.Default.ItemListMessageInfo, cancellationToken);
                var last = Print(output, page.Items, parse.GetValue(json), 0);
                while (parse.GetValue(follow) && !cancellationToken.IsCancellationRequested)
                {
                    try
                    {
                        // A full page means more are waiting: ask again at once instead of falling behind by a page a second.
                        if (page.Items.Count < AdminClient.PageSize)
                        {
                            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
                        }

                        page = await client.GetAsync($"/api/messages?after={last}&limit={AdminClient.PageSize}{filter}", AdminJsonContext.Default.ItemListMessageInfo, cancellationToken);
                        last = Print(output, page.Items, parse.GetValue(json), last);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static long Print(Output output, IReadOnlyList<MessageInfo> messages, bool json, long last)
    {
        foreach (var message in messages)
        {
            if (json)
            {
                output.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(message, AdminJsonContext.Default.MessageInfo));
            }
            else
            {
                var body = message.Payload ?? $"(binary, {message.PayloadBase64!.Length * 3 / 4} bytes)";
                output.Line($"{message.ReceivedAt.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)}  {message.DeviceId}  {message.Stream}  {body}");
            }

            last = Math.Max(last, message.Seq);
        }

        output.Out.Flush();
        return last;
    }
}
