using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Enroll.Shared.Files;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Tokens;

/// <summary>
/// P-256 private keys on disk: one PKCS#8 PEM file each, named <c>{prefix}{created}-{kid}.pem</c>, mode 0600. Refuses
/// to load a key other users can read.
/// </summary>
internal static class KeyFiles
{
    private const string StampFormat = "yyyyMMdd'T'HHmmssfff'Z'";

    public static string Write(string directory, string prefix, DateTimeOffset created, string keyId, string pem)
    {
        var file = Path.Combine(directory, $"{prefix}{created.ToString(StampFormat, CultureInfo.InvariantCulture)}-{keyId}.pem");
        OwnerOnlyFiles.WriteAllText(file, pem);
        return file;
    }

    /// <summary>The key files with <paramref name="prefix"/>, oldest first, with their creation times.</summary>
    public static IEnumerable<(string File, DateTimeOffset Created, string Pem)> Read(string directory, string prefix)
    {
        foreach (var file in Directory.EnumerateFiles(directory, prefix + "*.pem").Order(StringComparer.Ordinal))
        {
            if (OwnerOnlyFiles.IsAccessibleByOthers(file))
            {
                throw new InvalidOperationException(
                    $"The key {file} can be read by other users. Restrict it (chmod 600 '{file}') before starting the server.");
            }

            var stamp = Path.GetFileNameWithoutExtension(file)[prefix.Length..].Split('-')[0];
            var created = DateTimeOffset.TryParseExact(stamp, StampFormat, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed)
                ? parsed
                : File.GetCreationTimeUtc(file);
            yield return (file, created, File.ReadAllText(file));
        }
    }

    /// <summary>RFC 7638 JWK thumbprint of a P-256 public key.</summary>
    public static string Thumbprint(ECParameters publicKey)
    {
        var json = $$"""{"crv":"P-256","kty":"EC","x":"{{Base64UrlEncoder.Encode(publicKey.Q.X!)}}","y":"{{Base64UrlEncoder.Encode(publicKey.Q.Y!)}}"}""";
        return Base64UrlEncoder.Encode(SHA256.HashData(Encoding.UTF8.GetBytes(json)));
    }
}
