using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Enroll.Shared.Files;

namespace Enroll.Device;

/// <summary>What a running device process last wrote about its health, as <c>enroll device status</c> reads it.</summary>
public sealed record DeviceHealthSnapshot
{
    /// <summary>The process that wrote it.</summary>
    public required int Pid { get; init; }

    /// <summary>When it was written.</summary>
    public required DateTimeOffset UpdatedAt { get; init; }

    /// <summary>False once the process stopped cleanly.</summary>
    public required bool Running { get; init; }

    /// <summary>The faults the process was in.</summary>
    public required IReadOnlyList<DeviceFault> Faults { get; init; }
}

/// <summary>
/// The health file <c>health.json</c> in the state folder. It is allocated once at a fixed size and then overwritten in
/// place, so the process can still say "disk full" when the disk is full. A reader that meets a half-written file tries
/// again.
/// </summary>
internal static class DeviceHealthFile
{
    public const string FileName = "health.json";
    private const int Size = 64 * 1024;

    public static string PathIn(string statePath) => System.IO.Path.Combine(statePath, FileName);

    /// <summary>Writes <paramref name="snapshot"/> over the file, creating it at its fixed size first if needed.</summary>
    public static void Write(string statePath, DeviceHealthSnapshot snapshot)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(Trimmed(snapshot), HealthJsonContext.Default.DeviceHealthSnapshot);
        var path = PathIn(statePath);
        if (!File.Exists(path))
        {
            OwnerOnlyFiles.WriteAllText(path, new string(' ', Size));
        }

        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        var padded = new byte[Math.Max(Size, bytes.Length)];
        bytes.CopyTo(padded, 0);
        padded.AsSpan(bytes.Length).Fill((byte)' ');
        stream.Write(padded);
        stream.Flush();
    }

    /// <summary>The snapshot in <paramref name="statePath"/>, or null when there is none (no process ever ran there).</summary>
    public static DeviceHealthSnapshot? TryRead(string statePath)
    {
        var path = PathIn(statePath);
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (!File.Exists(path))
                {
                    return null;
                }

                var text = Encoding.UTF8.GetString(File.ReadAllBytes(path)).TrimEnd();
                return text.Length == 0 ? null : JsonSerializer.Deserialize(text, HealthJsonContext.Default.DeviceHealthSnapshot);
            }
            catch (Exception ex) when (attempt < 3 && ex is JsonException or IOException)
            {
                // Caught the writer mid-write: read again.
            }
            catch (Exception ex) when (ex is JsonException or IOException or UnauthorizedAccessException)
            {
                return null;
            }
        }
    }

    /// <summary>True when the process that wrote <paramref name="snapshot"/> still runs.</summary>
    public static bool IsAlive(DeviceHealthSnapshot snapshot)
    {
        if (!snapshot.Running)
        {
            return false;
        }

        try
        {
            using var process = Process.GetProcessById(snapshot.Pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    // Keeps the file under its fixed size whatever the messages say.
    private static DeviceHealthSnapshot Trimmed(DeviceHealthSnapshot snapshot) => snapshot with
    {
        Faults = [.. snapshot.Faults.Select(f => f.Message.Length <= 1000 ? f : f with { Message = f.Message[..1000] })],
    };
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, UseStringEnumConverter = true)]
[JsonSerializable(typeof(DeviceHealthSnapshot))]
internal sealed partial class HealthJsonContext : JsonSerializerContext;
