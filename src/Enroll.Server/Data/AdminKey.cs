using System.Security.Cryptography;
using System.Text;
using Enroll.Shared.Files;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Data;

/// <summary>
/// The operator API key, kept in <c>{data}/admin.key</c> (mode 0600). Operators pass it as
/// <c>Authorization: Bearer {key}</c>; the CLI reads the file when run on the server's machine.
/// </summary>
internal sealed class AdminKey
{
    public const string FileName = "admin.key";
    private readonly byte[] _keyBytes;

    private AdminKey(string path, string value, bool created)
    {
        Path = path;
        Value = value;
        Created = created;
        _keyBytes = Encoding.UTF8.GetBytes(value);
    }

    public string Path { get; }

    public string Value { get; }

    /// <summary>True when this start created the key.</summary>
    public bool Created { get; }

    public static AdminKey LoadOrCreate(string dataDirectory) => LoadOrCreate(dataDirectory, FileName, "eak_", "admin key");

    /// <summary>
    /// The secret in <c>{data}/{fileName}</c>, created (random, prefixed by <paramref name="prefix"/>, mode 0600) when
    /// missing; refused when other users can read it or it is too short.
    /// </summary>
    internal static AdminKey LoadOrCreate(string dataDirectory, string fileName, string prefix, string what)
    {
        var path = System.IO.Path.Combine(dataDirectory, fileName);
        if (File.Exists(path))
        {
            if (OwnerOnlyFiles.IsAccessibleByOthers(path))
            {
                throw new InvalidOperationException($"The {what} {path} can be read by other users. Restrict it (chmod 600 '{path}') before starting the server.");
            }

            var existing = File.ReadAllText(path).Trim();
            if (existing.Length < 16)
            {
                throw new InvalidOperationException($"The {what} in {path} is too short; delete the file to create a new one.");
            }

            return new AdminKey(path, existing, created: false);
        }

        var value = prefix + Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        OwnerOnlyFiles.WriteAllText(path, value + "\n");
        return new AdminKey(path, value, created: true);
    }

    /// <summary>Compares in constant time.</summary>
    public bool Matches(string? presented) =>
        presented is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), _keyBytes);
}
