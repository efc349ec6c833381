using System.Data.Common;

namespace Enroll.Server.Registry;

/// <summary>How both stores write and read <see cref="StoredKey"/> rows (table <c>server_keys</c>).</summary>
internal static class KeyRows
{
    /// <summary>The stored name of a use: <c>signing</c> or <c>encryption</c>.</summary>
    public static string KeyUseName(KeyUse use) => use switch
    {
        KeyUse.Signing => "signing",
        KeyUse.Encryption => "encryption",
        _ => throw new ArgumentOutOfRangeException(nameof(use), use, "no such key use"),
    };

    /// <summary>key_id, use, created_at, sealed_key, kek_id.</summary>
    public static StoredKey ReadKey(DbDataReader r) => new(
        r.GetString(0),
        r.GetString(1) switch
        {
            "signing" => KeyUse.Signing,
            "encryption" => KeyUse.Encryption,
            var other => throw new InvalidDataException($"server key {r.GetString(0)} has an unknown use '{other}'"),
        },
        RegistryRows.FromUnix(r.GetInt64(2)),
        (byte[])r.GetValue(3),
        r.GetString(4));
}
