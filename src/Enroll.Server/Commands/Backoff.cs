using System.Security.Cryptography;

namespace Enroll.Server.Commands;

/// <summary>The wait of the commands' background loops after failures in a row.</summary>
internal static class Backoff
{
    /// <summary><paramref name="interval"/> doubled per failure, capped at <paramref name="max"/>, from half to all of it (jitter).</summary>
    public static TimeSpan After(int failures, TimeSpan interval, TimeSpan max)
    {
        var doubled = interval * Math.Pow(2, Math.Min(failures, 16));
        var capped = doubled < max ? doubled : max;
        return capped * (0.5 + (RandomNumberGenerator.GetInt32(1000) / 2000.0));
    }
}
