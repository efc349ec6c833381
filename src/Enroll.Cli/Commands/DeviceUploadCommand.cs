using System.CommandLine;
using System.Globalization;
using Enroll.Cli.Infrastructure;
using Enroll.Device;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll device upload PATH</c>: copy a file into the device's outbox and, with <c>--deliver</c>, send it.</summary>
internal static class DeviceUploadCommand
{
    /// <summary>Files at least this large report their copy's progress on standard error.</summary>
    internal const long ProgressAbove = 16L * 1024 * 1024;

    private static readonly TimeSpan DeliveryPoll = TimeSpan.FromMilliseconds(200);

    public static Command Create()
    {
        var options = new DeviceCommand.DeviceOptions();
        var path = new Argument<string>("PATH") { Description = "The file to send" };
        var contentType = new Option<string?>("--content-type") { Description = "The file's MIME type, for example image/jpeg" };
        var deliver = new Option<bool>("--deliver") { Description = "Also connect and send it, and return only when the server has it (or refused it)" };
        var json = CliOptions.Json();
        var command = new Command("upload", "Copy a file into the device's outbox (durable when it returns) and print its transfer ID; the agent, or --deliver, sends it") { path, contentType, deliver, json };
        options.AddTo(command);

        // Here --name names the file, not the device (a device's name is set when it registers).
        var name = options.Name;
        name.Description = "The name the server stores the file under (default: the file's own name)";
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await DeviceCommand.RunDevice(output, async () =>
            {
                var file = parse.GetValue(path)!;
                FileStream stream;
                try
                {
                    stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    throw new CliUsageException($"cannot read {file}: {ex.Message}");
                }

                await using var _ = stream;
                var fileName = parse.GetValue(name) ?? Path.GetFileName(file);
                if (Protocol.Transfers.TransferLimits.CheckName(fileName) is { } invalid)
                {
                    throw new CliUsageException($"--name: {invalid}");
                }

                await using var provider = await options.BuildAsync(parse, configure: o => o.DeviceName = null);
                var outbox = provider.GetRequiredService<DeviceOutbox>();
                var hosted = parse.GetValue(deliver) ? provider.GetServices<IHostedService>().ToList() : [];
                foreach (var service in hosted)
                {
                    await service.StartAsync(cancellationToken);
                }

                var content = stream.Length >= ProgressAbove ? new ProgressStream(stream, fileName, output.Error) : (Stream)stream;
                string transferId;
                await using (content)
                {
                    transferId = await outbox.SendFileAsync(fileName, content, parse.GetValue(contentType), cancellationToken);
                }

                var transfer = outbox.GetTransfer(transferId)!;
                if (hosted.Count > 0)
                {
                    transfer = await WaitUntilFinishedAsync(outbox, transferId, cancellationToken) ?? transfer with { State = OutboxTransferState.Failed, Reason = "dropped from the outbox to make room (DropOldest)" };
                    foreach (var service in Enumerable.Reverse(hosted))
                    {
                        await service.StopAsync(CancellationToken.None);
                    }
                }

                if (parse.GetValue(json))
                {
                    output.Json(
                        new UploadOutput
                        {
                            TransferId = transferId,
                            Name = fileName,
                            Size = transfer.Size,
                            Chunks = transfer.ChunkCount,
                            State = transfer.State switch
                            {
                                OutboxTransferState.Delivered => "delivered",
                                OutboxTransferState.Failed => "failed",
                                _ => "stored",
                            },
                            Reason = transfer.Reason,
                        },
                        CliJsonContext.Default.UploadOutput);
                }
                else if (transfer.State != OutboxTransferState.Failed)
                {
                    output.Line(transferId);
                }

                return transfer.State == OutboxTransferState.Failed
                    ? output.Fail(ExitCodes.Refused, $"the file {fileName} (transfer {transferId}) was not delivered: {transfer.Reason}")
                    : ExitCodes.Ok;
            });
        });
        return command;
    }

    /// <summary>Waits until the transfer is delivered or failed; null when it left the outbox otherwise (dropped).</summary>
    private static async Task<OutboxTransfer?> WaitUntilFinishedAsync(DeviceOutbox outbox, string transferId, CancellationToken cancellationToken)
    {
        while (true)
        {
            var transfer = outbox.GetTransfer(transferId);
            if (transfer is null or { State: OutboxTransferState.Delivered or OutboxTransferState.Failed })
            {
                return transfer;
            }

            await Task.Delay(DeliveryPoll, TimeProvider.System, cancellationToken);
        }
    }

    /// <summary>Reports a large file's copy on standard error, about every tenth of it.</summary>
    private sealed class ProgressStream(FileStream inner, string name, TextWriter error) : Stream
    {
        private readonly long _length = inner.Length;
        private long _read;
        private int _reportedTenths;

        public override bool CanRead => true;

        public override bool CanSeek => true;

        public override bool CanWrite => false;

        public override long Length => inner.Length;

        public override long Position
        {
            get => inner.Position;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Counted(inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Counted(await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false));

        private int Counted(int read)
        {
            _read += read;
            var tenths = _length == 0 ? 10 : (int)(_read * 10 / _length);
            if (tenths > _reportedTenths)
            {
                _reportedTenths = tenths;
                error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"copying {name} into the outbox: {_read / 1048576.0:0.0} of {_length / 1048576.0:0.0} MiB ({tenths * 10} %)"));
                error.Flush();
            }

            return read;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

/// <summary>What <c>enroll device upload --json</c> prints.</summary>
internal sealed record UploadOutput
{
    public required string TransferId { get; init; }

    public required string Name { get; init; }

    public long Size { get; init; }

    public int Chunks { get; init; }

    /// <summary><c>stored</c> (in the outbox), <c>delivered</c> (with --deliver) or <c>failed</c>.</summary>
    public required string State { get; init; }

    public string? Reason { get; init; }
}
