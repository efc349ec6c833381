using System.Globalization;
using System.Security.Cryptography;
using Enroll.Testing;

namespace Enroll.Reliability.Tests.Harness;

/// <summary>
/// The pieces the file transfer faults share: a generated random file with its SHA-256, <c>enroll device upload</c>
/// through the real CLI, a child's resident memory read from /proc, and waits on what the server holds (through
/// <see cref="TransferProbe"/>).
/// </summary>
internal static class FileUpload
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>Writes <paramref name="size"/> random bytes to <paramref name="path"/>; their SHA-256 (lowercase hex).</summary>
    public static async Task<string> GenerateAsync(string path, long size)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var block = new byte[1024 * 1024];
        await using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        for (long written = 0; written < size; written += block.Length)
        {
            var length = (int)Math.Min(block.Length, size - written);
            RandomNumberGenerator.Fill(block.AsSpan(0, length));
            hash.AppendData(block, 0, length);
            await file.WriteAsync(block.AsMemory(0, length));
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The chunks a file of <paramref name="size"/> bytes takes at the device's default chunk size.</summary>
    public static int ChunkCount(long size, int chunkBytes = Enroll.Protocol.Transfers.TransferLimits.DefaultChunkBytes) =>
        (int)Math.Max(1, (size + chunkBytes - 1) / chunkBytes);

    /// <summary>A process's resident memory now (VmRSS), in bytes; null once it has gone.</summary>
    public static long? ResidentBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    /// <summary>Samples <paramref name="agent"/>'s VmRSS every 10 ms until it exits; the highest sample, in bytes.</summary>
    public static async Task<long> PeakResidentBytesAsync(RunningAgent agent, TimeSpan timeout)
    {
        long peak = 0;
        var deadline = DateTime.UtcNow + timeout;
        while (!agent.HasExited && DateTime.UtcNow < deadline)
        {
            peak = Math.Max(peak, ResidentBytes(agent.Pid) ?? 0);
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }

        return peak;
    }

    /// <summary>Waits until the server's registry holds at least <paramref name="atLeast"/> chunks of the transfer; the held indexes.</summary>
    public static Task<IReadOnlyList<int>> WaitHeldAsync(TransferProbe probe, string deviceId, string transferId, int atLeast) =>
        Eventually.ReturnsAsync(() => probe.HeldChunksAsync(deviceId, transferId), held => held.Count >= atLeast, Patience, $"the server holds {atLeast} chunks of {transferId}");

    /// <summary>Waits until the server stored the device's file; all its stored files then.</summary>
    public static Task<IReadOnlyList<ProbedFile>> WaitStoredAsync(TransferProbe probe, string deviceId, string transferId) =>
        Eventually.ReturnsAsync(() => probe.FilesAsync(deviceId), files => files.Any(f => f.TransferId == transferId), Patience, $"the server stored the file of {transferId}");
}
