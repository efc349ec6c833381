using System.Security.Cryptography;

namespace Enroll.Protocol;

/// <summary>
/// Generates 26-character, lexicographically time-ordered identifiers (48-bit millisecond timestamp followed by 80 random
/// bits, Crockford base32, lower case). IDs made within the same millisecond by one generator keep increasing.
/// </summary>
public sealed class TimeOrderedId
{
    private const string Alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
    private readonly TimeProvider _timeProvider;
    private readonly Lock _lock = new();
    private long _lastMilliseconds = -1;
    private readonly byte[] _lastRandom = new byte[10];

    /// <summary>Creates a generator that reads time from <paramref name="timeProvider"/>.</summary>
    public TimeOrderedId(TimeProvider timeProvider) => _timeProvider = timeProvider;

    /// <summary>Returns a new identifier.</summary>
    public string Next()
    {
        Span<byte> bytes = stackalloc byte[16];
        var milliseconds = _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_lock)
        {
            if (milliseconds <= _lastMilliseconds)
            {
                // Same (or an earlier, after a clock step back) millisecond: keep order by incrementing the random part.
                milliseconds = _lastMilliseconds;
                Increment(_lastRandom);
            }
            else
            {
                RandomNumberGenerator.Fill(_lastRandom);
                _lastMilliseconds = milliseconds;
            }

            _lastRandom.CopyTo(bytes[6..]);
        }

        for (var i = 5; i >= 0; i--)
        {
            bytes[i] = (byte)(milliseconds & 0xFF);
            milliseconds >>= 8;
        }

        return Encode(bytes);
    }

    /// <summary>Reads the timestamp back out of an identifier made by <see cref="Next"/>.</summary>
    public static bool TryGetTimestamp(string id, out DateTimeOffset timestamp)
    {
        timestamp = default;
        if (id is null || id.Length != 26)
        {
            return false;
        }

        long value = 0;
        for (var i = 0; i < 10; i++)
        {
            var digit = Alphabet.IndexOf(id[i], StringComparison.Ordinal);
            if (digit < 0)
            {
                return false;
            }

            value = (value << 5) | (uint)digit;
        }

        // 10 characters hold 50 bits; the top 2 are zero for a 48-bit timestamp.
        timestamp = DateTimeOffset.FromUnixTimeMilliseconds(value);
        return true;
    }

    private static void Increment(byte[] value)
    {
        for (var i = value.Length - 1; i >= 0; i--)
        {
            if (++value[i] != 0)
            {
                return;
            }
        }
    }

    private static string Encode(ReadOnlySpan<byte> bytes)
    {
        // 128 bits -> 26 base32 characters (the first carries 3 bits).
        Span<char> chars = stackalloc char[26];
        var hi = (ulong)bytes[0] << 56 | (ulong)bytes[1] << 48 | (ulong)bytes[2] << 40 | (ulong)bytes[3] << 32 |
                 (ulong)bytes[4] << 24 | (ulong)bytes[5] << 16 | (ulong)bytes[6] << 8 | bytes[7];
        var lo = (ulong)bytes[8] << 56 | (ulong)bytes[9] << 48 | (ulong)bytes[10] << 40 | (ulong)bytes[11] << 32 |
                 (ulong)bytes[12] << 24 | (ulong)bytes[13] << 16 | (ulong)bytes[14] << 8 | bytes[15];
        for (var i = 25; i >= 0; i--)
        {
            chars[i] = Alphabet[(int)(lo & 31)];
            lo = (lo >> 5) | (hi << 59);
            hi >>= 5;
        }

        return new string(chars);
    }
}
