using System.Security.Cryptography;

namespace Enroll.Testing;

/// <summary>Key-encryption key files as an operator makes them (<c>head -c 32 /dev/urandom | base64 > kek; chmod 600 kek</c>).</summary>
public static class TestKeyEncryptionKeys
{
    /// <summary>Writes a new random KEK to <paramref name="path"/>, readable by the owner only; returns the path.</summary>
    public static string Write(string path)
    {
        File.WriteAllText(path, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)) + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        return path;
    }
}
