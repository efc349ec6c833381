using System.IO.Compression;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Ingest;

/// <summary>The outcome of ingesting one message.</summary>
internal enum IngestResult
{
    Stored,
    Duplicate,

    /// <summary>Refused for good: bad properties, shape, size or hash (PUBACK 0x99 Payload format invalid).</summary>
    Invalid,

    /// <summary>Refused for good: the device's file quota (PUBACK 0x97 Quota exceeded).</summary>
    QuotaExceeded,
}

/// <summary>
/// Turns a device's publish into a stored message: checks the properties, decompresses (bounded), stores it once in the
/// message store (de-duplicated on Device ID + message ID, see <see cref="IMessageStore.StoreMessageAsync"/>), then hands new messages to the other
/// sinks. The caller acknowledges the publish only after this completes, so nothing acknowledged is ever lost.
/// </summary>
internal sealed class MessageIngest(IMessageStore registry, IEnumerable<IMessageSink> sinks, ServerMetrics metrics, ILogger<MessageIngest> logger)
{
    /// <summary>The largest payload accepted after decompression.</summary>
    public const int MaxPayloadBytes = 1024 * 1024;

    private readonly IMessageSink[] _sinks = sinks.ToArray();

    /// <summary>
    /// Stores <paramref name="message"/>; its payload, decompressed when <paramref name="contentEncoding"/> says so, may
    /// have at most <paramref name="maxPayloadBytes"/> bytes (<see cref="MaxPayloadBytes"/> unless a chunked message's larger
    /// limit is given).
    /// </summary>
    public async Task<(IngestResult Result, string? Reason)> IngestAsync(IngestedMessage message, string? contentEncoding, CancellationToken cancellationToken, long maxPayloadBytes = MaxPayloadBytes)
    {
        if (message.MessageId.Length is 0 or > 64)
        {
            return Invalid(message, "message_id must be 1-64 characters");
        }

        var payload = message.Payload;
        if (contentEncoding is not null)
        {
            if (contentEncoding != "gzip")
            {
                return Invalid(message, $"unknown content encoding '{contentEncoding}'");
            }

            if (!TryGunzip(payload, maxPayloadBytes, out var plain))
            {
                return Invalid(message, $"the gzip payload is corrupt or expands beyond {maxPayloadBytes} bytes");
            }

            payload = plain;
        }

        if (payload.Length > maxPayloadBytes)
        {
            return Invalid(message, $"the payload is larger than {maxPayloadBytes} bytes");
        }

        var stored = message with { Payload = payload };
        var isNew = await registry.StoreMessageAsync(stored, cancellationToken).ConfigureAwait(false);
        if (!isNew)
        {
            metrics.MessageIngested("duplicate");
            return (IngestResult.Duplicate, null);
        }

        foreach (var sink in _sinks)
        {
            await sink.AcceptAsync(stored, cancellationToken).ConfigureAwait(false);
        }

        metrics.MessageIngested("stored");
        return (IngestResult.Stored, null);
    }

    private (IngestResult, string?) Invalid(IngestedMessage message, string reason)
    {
        metrics.MessageIngested("invalid");
        Log.MessageRefused(logger, message.DeviceId, message.MessageId, reason);
        return (IngestResult.Invalid, reason);
    }

    private static bool TryGunzip(ReadOnlyMemory<byte> compressed, long maxBytes, out ReadOnlyMemory<byte> plain)
    {
        plain = default;
        try
        {
            using var input = System.Runtime.InteropServices.MemoryMarshal.TryGetArray(compressed, out var segment)
                ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
                : new MemoryStream(compressed.ToArray());
            using var gzip = new GZipStream(input, CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[81920];
            int read;
            while ((read = gzip.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (output.Length + read > maxBytes)
                {
                    return false;
                }

                output.Write(buffer, 0, read);
            }

            plain = output.ToArray();
            return true;
        }
        catch (InvalidDataException)
        {
            return false;
        }
    }
}
