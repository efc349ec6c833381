using System.Buffers;
using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using Enroll.Cli.Infrastructure;
using Enroll.Protocol.Admin;
using Spectre.Console;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll files list|get|delete|transfers</c>: the files devices uploaded, through the server's HTTP API (docs/files.md).</summary>
internal static class FilesCommand
{
    private const int CopyBufferBytes = 80 * 1024;

    public static Command Create()
    {
        var command = new Command("files", "List, download and delete the files devices uploaded, and follow uploads under way");
        command.Subcommands.Add(List());
        command.Subcommands.Add(Get());
        command.Subcommands.Add(Delete());
        command.Subcommands.Add(Transfers());
        return command;
    }

    private static Command List()
    {
        var device = new Option<string?>("--device") { Description = "Only this device's files" };
        var json = CliOptions.Json();
        var command = new Command("list", "List the files devices uploaded, in the order they were stored") { device, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var items = await client.GetAllAsync("/api/files" + DeviceQuery(parse.GetValue(device)), FileAdminJsonContext.Default.DeviceFileInfo, output.Error, "files", cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(new ItemList<DeviceFileInfo>(items), FileAdminJsonContext.Default.ItemListDeviceFileInfo);
                    return ExitCodes.Ok;
                }

                if (items.Count == 0)
                {
                    output.Line("No files. Devices upload them with DeviceOutbox.SendFileAsync, or: enroll device upload PATH");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("ID", "Device", "Name", "Size", "Type", "Received", "SHA-256");
                foreach (var f in items)
                {
                    table.AddRow(
                        f.FileId ?? string.Empty,
                        f.DeviceId ?? string.Empty,
                        Markup.Escape(f.Name ?? string.Empty),
                        ByteProgress.Size(f.Size),
                        Markup.Escape(f.ContentType ?? "-"),
                        Time(f.ReceivedAt),
                        f.Sha256 is { Length: > 16 } sha ? sha[..16] + "..." : f.Sha256 ?? string.Empty);
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Get()
    {
        var id = new Argument<string>("id") { Description = "The file's ID (file_...)" };
        var path = new Option<string?>("--output", "-o") { Description = "Where to save it: a file, or a folder to save it in under its name (default: its name, in the current folder)" };
        var force = new Option<bool>("--force") { Description = "Overwrite the file if it exists" };
        var json = CliOptions.Json();
        var command = new Command("get", "Download a file, verifying its SHA-256; progress on standard error for large files") { id, path, force, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var fileId = Uri.EscapeDataString(parse.GetValue(id)!);
                var info = await client.GetAsync($"/api/files/{fileId}", FileAdminJsonContext.Default.DeviceFileInfo, cancellationToken);
                // The server checked the name (no separators, no "." or ".."); the CLI still never lets it leave the folder.
                var name = Path.GetFileName(info.Name) is { Length: > 0 } own and not "." and not ".." ? own : info.FileId!;
                var target = Path.GetFullPath(parse.GetValue(path) ?? name);
                if (Directory.Exists(target))
                {
                    target = Path.Combine(target, name);
                }

                if (!Directory.Exists(Path.GetDirectoryName(target)))
                {
                    return output.Fail(ExitCodes.Usage, $"the folder of {target} does not exist");
                }

                if (File.Exists(target) && !parse.GetValue(force))
                {
                    return output.Fail(ExitCodes.Usage, $"{target} exists; pass --force to overwrite it, or -o another path");
                }

                var saved = await DownloadAsync(client, output, info, fileId, target, parse.GetValue(force), cancellationToken);
                if (saved != ExitCodes.Ok)
                {
                    return saved;
                }

                if (parse.GetValue(json))
                {
                    output.Json(info, FileAdminJsonContext.Default.DeviceFileInfo);
                }
                else
                {
                    output.Line($"Saved {info.FileId} ({ByteProgress.Size(info.Size)}, SHA-256 verified) to {target}");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    /// <summary>
    /// Streams the content into <c>TARGET.partial</c> while hashing it, and moves it to <paramref name="target"/> only when
    /// its length and SHA-256 are the server's (<c>Content-Length</c>, <c>ETag</c>); a partial file never stays behind.
    /// </summary>
    private static async Task<int> DownloadAsync(AdminClient client, Output output, DeviceFileInfo info, string fileId, string target, bool overwrite, CancellationToken cancellationToken)
    {
        using var response = await client.GetStreamAsync($"/api/files/{fileId}/content", cancellationToken);
        var expectedHash = response.Headers.ETag?.Tag.Trim('"') ?? info.Sha256;
        var expectedLength = response.Content.Headers.ContentLength ?? info.Size;
        var partial = target + ".partial";
        try
        {
            string hash;
            long length;
            await using (var content = await response.Content.ReadAsStreamAsync(cancellationToken))
            await using (var file = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous))
            {
                (hash, length) = await ByteProgress.RunAsync(output, $"{info.Name} ({info.FileId})", expectedLength, report => CopyAsync(content, file, report, expectedLength, cancellationToken));
            }

            if (length != expectedLength)
            {
                return output.Fail(ExitCodes.Unreachable, $"the server sent {length} bytes of {expectedLength}; nothing was saved (try again)");
            }

            if (!string.Equals(hash, expectedHash, StringComparison.OrdinalIgnoreCase))
            {
                return output.Fail(ExitCodes.Failure, $"the content's SHA-256 is {hash}, not {expectedHash} as the server says (ETag); nothing was saved");
            }

            File.Move(partial, target, overwrite);
            return ExitCodes.Ok;
        }
        finally
        {
            File.Delete(partial);
        }
    }

    private static async Task<(string Hash, long Length)> CopyAsync(Stream source, Stream target, Action<long> report, long expectedLength, CancellationToken cancellationToken)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferBytes);
        long copied = 0;
        try
        {
            int read;
            while ((read = await ReadAsync(source, buffer, copied, expectedLength, cancellationToken)) > 0)
            {
                sha.AppendData(buffer, 0, read);
                await target.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                copied += read;
                report(copied);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return (Convert.ToHexStringLower(sha.GetHashAndReset()), copied);
    }

    private static async Task<int> ReadAsync(Stream source, byte[] buffer, long copied, long expectedLength, CancellationToken cancellationToken)
    {
        try
        {
            return await source.ReadAsync(buffer, cancellationToken);
        }
        catch (IOException ex)
        {
            throw new AdminApiException(ExitCodes.Unreachable, $"the download broke off after {copied} bytes of {expectedLength}: {ex.Message}; nothing was saved (try again)");
        }
    }

    private static Command Delete()
    {
        var id = new Argument<string>("id") { Description = "The file's ID (file_...)" };
        var json = CliOptions.Json();
        var command = new Command("delete", "Delete a file: its record and its bytes; it no longer counts against its device's quota") { id, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var deleted = await client.DeleteAsync($"/api/files/{Uri.EscapeDataString(parse.GetValue(id)!)}", FileAdminJsonContext.Default.DeviceFileInfo, cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(deleted, FileAdminJsonContext.Default.DeviceFileInfo);
                }
                else
                {
                    output.Line($"Deleted {deleted.FileId} ({deleted.Name}, {ByteProgress.Size(deleted.Size)}) of device {deleted.DeviceId}.");
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Transfers()
    {
        var device = new Option<string?>("--device") { Description = "Only this device's transfers" };
        var json = CliOptions.Json();
        var command = new Command("transfers", "List the uploads under way (large messages and files): chunks received of all, oldest first") { device, json };
        var connection = AdminClient.AddOptions(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await TokensCommand.Run(output, async () =>
            {
                using var client = AdminClient.Create(parse, connection);
                var items = await client.GetAllAsync("/api/transfers" + DeviceQuery(parse.GetValue(device)), FileAdminJsonContext.Default.TransferInfo, output.Error, "transfers", cancellationToken);
                if (parse.GetValue(json))
                {
                    output.Json(new ItemList<TransferInfo>(items), FileAdminJsonContext.Default.ItemListTransferInfo);
                    return ExitCodes.Ok;
                }

                if (items.Count == 0)
                {
                    output.Line("No transfers under way.");
                    return ExitCodes.Ok;
                }

                var table = new Table().AddColumns("Device", "Transfer", "Kind", "Name", "Received", "Size", "Started", "Last chunk");
                foreach (var t in items)
                {
                    table.AddRow(
                        t.DeviceId ?? string.Empty,
                        t.TransferId ?? string.Empty,
                        t.Kind ?? string.Empty,
                        Markup.Escape(t.Name ?? string.Empty),
                        string.Create(CultureInfo.InvariantCulture, $"{t.Received}/{t.ChunkCount} chunks ({ByteProgress.Percent(t.Received, t.ChunkCount)}%)"),
                        ByteProgress.Size(t.Size),
                        Time(t.StartedAt),
                        Time(t.UpdatedAt));
                }

                output.Console.Write(table);
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static string DeviceQuery(string? device) => device is null ? string.Empty : $"?device={Uri.EscapeDataString(device)}";

    private static string Time(DateTimeOffset? at) => at?.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) ?? "-";
}
