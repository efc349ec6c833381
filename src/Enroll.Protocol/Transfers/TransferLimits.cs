using System.Globalization;

namespace Enroll.Protocol.Transfers;

/// <summary>
/// The limits and defaults of chunked transfers (SPEC §2.7), declared once: the device library chunks and refuses by
/// them, the server checks every chunk against them, and the docs quote them. Servers and devices may lower or raise the
/// configurable ones; the protocol ones (<see cref="MinChunkBytes"/>, <see cref="MaxChunkCount"/>, name rules) are fixed.
/// </summary>
public static class TransferLimits
{
    /// <summary>The chunk size a device uses when the broker allows it (payload bytes per chunk, before the packet's headers).</summary>
    public const int DefaultChunkBytes = 128 * 1024;

    /// <summary>The smallest chunk a transfer may declare (every chunk but the last has exactly the declared size).</summary>
    public const int MinChunkBytes = 1024;

    /// <summary>The most chunks one transfer may have.</summary>
    public const int MaxChunkCount = 1 << 20;

    /// <summary>The largest message (as sent, after compression) a device sends by default; larger ones are refused at <c>SendAsync</c>.</summary>
    public const long DefaultMaxMessageBytes = 16L * 1024 * 1024;

    /// <summary>The largest file a device sends, and a server takes, by default.</summary>
    public const long DefaultMaxFileBytes = 1024L * 1024 * 1024;

    /// <summary>The bytes of files a server stores per device by default (stored files plus transfers under way).</summary>
    public const long DefaultDeviceQuotaBytes = 5L * 1024 * 1024 * 1024;

    /// <summary>How long a server keeps an incomplete transfer that receives no chunk, by default; then its staged chunks are removed.</summary>
    public static readonly TimeSpan DefaultIncompleteExpiry = TimeSpan.FromHours(24);

    /// <summary>How long a server remembers a finished (completed or refused) transfer, to answer resent chunks and status requests.</summary>
    public static readonly TimeSpan FinishedRetention = TimeSpan.FromDays(7);

    /// <summary>Longest file name, in UTF-16 characters.</summary>
    public const int MaxNameLength = 255;

    /// <summary>Why <paramref name="name"/> may not name a file (1 to 255 characters, no path separators, control characters, "." or ".."), or null when it may.</summary>
    public static string? CheckName(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "a file name is required";
        }

        if (name.Length > MaxNameLength)
        {
            return string.Create(CultureInfo.InvariantCulture, $"the file name is {name.Length} characters, more than the limit of {MaxNameLength}");
        }

        if (name is "." or ".." || name.Any(c => c is '/' or '\\' || char.IsControl(c)))
        {
            return "the file name must not be '.' or '..' nor contain '/', '\\' or control characters";
        }

        return null;
    }

    /// <summary>True when <paramref name="hash"/> is a SHA-256 in lowercase hexadecimal (64 characters).</summary>
    public static bool IsSha256Hex(string? hash) =>
        hash is { Length: 64 } && hash.All(c => c is (>= '0' and <= '9') or (>= 'a' and <= 'f'));

    /// <summary>
    /// Why a transfer of <paramref name="size"/> bytes in chunks of <paramref name="chunkSize"/> declaring
    /// <paramref name="chunkCount"/> chunks is not consistent, or null when it is: the count must be
    /// ceil(size / chunk size) (at least 1), within <see cref="MaxChunkCount"/>, the chunk size at least
    /// <see cref="MinChunkBytes"/>.
    /// </summary>
    public static string? CheckShape(long size, int chunkSize, int chunkCount)
    {
        if (size < 0 || chunkSize < MinChunkBytes || chunkCount < 1 || chunkCount > MaxChunkCount)
        {
            return string.Create(CultureInfo.InvariantCulture, $"size must be at least 0, chunk_size at least {MinChunkBytes} and chunk_count 1 to {MaxChunkCount} (size {size}, chunk_size {chunkSize}, chunk_count {chunkCount})");
        }

        var expected = Math.Max(1, (size + chunkSize - 1) / chunkSize);
        return expected != chunkCount
            ? string.Create(CultureInfo.InvariantCulture, $"chunk_count must be {expected} for size {size} in chunks of {chunkSize} (got {chunkCount})")
            : null;
    }

    /// <summary>The payload length chunk <paramref name="index"/> of that transfer must have.</summary>
    public static int ChunkLength(long size, int chunkSize, int chunkCount, int index) =>
        index < chunkCount - 1 ? chunkSize : (int)(size - ((long)chunkCount - 1) * chunkSize);
}

/// <summary>
/// The MQTT 5 user properties a chunk carries (SPEC §2.7, docs/protocol.md §13). Every chunk of a transfer carries all of
/// them with the same values, so the server can start a transfer from whichever chunk arrives first.
/// </summary>
public static class TransferProperties
{
    /// <summary>The transfer's ID, chosen by the device (1-64 characters of the identifier rule), unique per device.</summary>
    public const string TransferId = "transfer_id";

    /// <summary>The chunk's index, 0 to <see cref="ChunkCount"/> − 1, in decimal.</summary>
    public const string ChunkIndex = "chunk_index";

    /// <summary>How many chunks the transfer has, in decimal.</summary>
    public const string ChunkCount = "chunk_count";

    /// <summary>The payload length of every chunk but the last, in decimal; chunk i starts at byte i × chunk_size.</summary>
    public const string ChunkSize = "chunk_size";

    /// <summary>The length of the whole, in bytes, in decimal.</summary>
    public const string Size = "size";

    /// <summary>The SHA-256 of the whole (the chunks' payloads concatenated in index order), lowercase hexadecimal.</summary>
    public const string Sha256 = "sha256";

    /// <summary>A file's name (files topic only).</summary>
    public const string Name = "name";

    /// <summary>Every property a chunk carries besides those of the message it belongs to.</summary>
    public static IReadOnlyList<string> All { get; } = [TransferId, ChunkIndex, ChunkCount, ChunkSize, Size, Sha256, Name];
}

/// <summary>The kinds of transfer: a message too large for one packet, or a file.</summary>
public static class TransferKinds
{
    /// <summary>A message sent in chunks on its stream's messages topic; stored as one message.</summary>
    public const string Message = "message";

    /// <summary>A file sent in chunks on the device's files topic; stored in the server's file store.</summary>
    public const string File = "file";
}

/// <summary>The states of a transfer as the server reports them (<c>transfers/status</c>).</summary>
public static class TransferStates
{
    /// <summary>Some chunks received, not all.</summary>
    public const string Receiving = "receiving";

    /// <summary>Every chunk received, the hash verified, the whole stored.</summary>
    public const string Complete = "complete";

    /// <summary>Refused for good (hash mismatch, quota, limits); resent chunks get the same refusal.</summary>
    public const string Refused = "refused";

    /// <summary>The server holds nothing of it: never started, or expired and removed.</summary>
    public const string Unknown = "unknown";
}
