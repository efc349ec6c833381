using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Enroll.Server.Data;
using Enroll.Server.Registry;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Server.Http.Operators;

/// <summary>
/// Who a credential is: the admin key, an operator's key (<c>eop_...</c>, looked up by its SHA-256), or a console
/// session's cookie (looked up by its SHA-256; refreshed at most once a minute, so a busy console writes little).
/// </summary>
internal sealed partial class OperatorAuth(AdminKey adminKey, IOperatorStore store, TimeProvider timeProvider, IOptions<EnrollServerOptions> options)
{
    public const string CookieName = "enroll_session";

    public const string CsrfHeader = "X-Enroll-CSRF";

    public const string KeyPrefix = "eop_";

    /// <summary>A session not used for this long ends.</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromHours(1);

    /// <summary>last_seen is written at most this often per session.</summary>
    public static readonly TimeSpan TouchInterval = TimeSpan.FromMinutes(1);

    public TimeSpan SessionLifetime => options.Value.SessionLifetime;

    public TimeProvider Time => timeProvider;

    [GeneratedRegex("^[a-z][a-z0-9._-]{1,63}$", RegexOptions.CultureInvariant)]
    public static partial Regex NamePattern();

    /// <summary>SHA-256 of <paramref name="value"/> as lower-case hex: what the registry keeps of keys and cookies.</summary>
    public static string Hash(string value) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(value)));

    /// <summary>32 random bytes, base64url.</summary>
    public static string NewSecret() => Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(32));

    /// <summary>A new operator key; only its hash is stored.</summary>
    public static string NewOperatorKey() => KeyPrefix + NewSecret();

    /// <summary>The identity of a key in a request, or null when it is neither the admin key nor an active operator's.</summary>
    public async Task<OperatorIdentity?> AuthenticateKeyAsync(string? key, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(key))
        {
            return null;
        }

        if (adminKey.Matches(key))
        {
            return OperatorIdentity.Admin;
        }

        if (!key.StartsWith(KeyPrefix, StringComparison.Ordinal) || key.Length > 256)
        {
            return null;
        }

        return await store.FindOperatorByKeyHashAsync(Hash(key), cancellationToken).ConfigureAwait(false) is { } account
            ? new OperatorIdentity(account.Name, IsAdmin: false)
            : null;
    }

    /// <summary>The live session of <paramref name="cookie"/>, or null; its last_seen is refreshed when a minute old.</summary>
    public async Task<ConsoleSession?> AuthenticateSessionAsync(string cookie, CancellationToken cancellationToken)
    {
        if (cookie.Length is 0 or > 256)
        {
            return null;
        }

        var now = timeProvider.GetUtcNow();
        var idHash = Hash(cookie);
        var session = await store.FindSessionAsync(idHash, now, now - IdleTimeout, cancellationToken).ConfigureAwait(false);
        if (session is not null && now - session.LastSeen >= TouchInterval)
        {
            await store.TouchSessionAsync(idHash, now, cancellationToken).ConfigureAwait(false);
        }

        return session;
    }

    /// <summary>Creates a session of <paramref name="identity"/>; returns the cookie value (never stored) and the row.</summary>
    public async Task<(string Cookie, ConsoleSession Session)> CreateSessionAsync(OperatorIdentity identity, CancellationToken cancellationToken)
    {
        var now = timeProvider.GetUtcNow();
        var cookie = NewSecret();
        var session = new ConsoleSession(Hash(cookie), identity.Name, identity.IsAdmin, NewSecret(), now, now + SessionLifetime, now);
        await store.CreateSessionAsync(session, cancellationToken).ConfigureAwait(false);
        return (cookie, session);
    }

    /// <summary>True when <paramref name="presented"/> equals the session's CSRF token (compared in constant time).</summary>
    public static bool CsrfMatches(ConsoleSession session, string? presented) =>
        !string.IsNullOrEmpty(presented) &&
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), Encoding.UTF8.GetBytes(session.CsrfToken));
}
