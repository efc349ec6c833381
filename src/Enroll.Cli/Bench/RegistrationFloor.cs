using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Shared.Storage;
using Enroll.Shared.Tokens;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Enroll.Cli.Bench;

/// <summary>
/// The registration work floor of <c>enroll bench register</c> (SPEC §7): only the work a registration with a
/// Provisioning Token cannot avoid, with nothing of the server's around it — parse the request, look the token's
/// SHA-256 up in SQLite, sign an access token and a Registration Token (ES256, the claims and lifetimes the server's
/// issuer uses), commit one device row through the registry's group-commit writer (<see cref="SqliteDatabase"/>, WAL,
/// <c>synchronous=FULL</c> as the registry's default) and build the answer. The load client that received the request
/// publishes the answer; the requester verifies both tokens as a device does (<see cref="RegistrationAnswerCheck"/>).
/// </summary>
internal sealed class RegistrationFloor : IAsyncDisposable
{
    private static readonly TimeSpan AccessTokenLifetime = TimeSpan.FromHours(24);
    private static readonly TimeSpan RegistrationTokenLifetime = TimeSpan.FromDays(30);

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS provisioning_tokens (
            token_hash BLOB PRIMARY KEY, org_id TEXT NOT NULL, auto_approve INTEGER NOT NULL, expires_at INTEGER);
        CREATE TABLE IF NOT EXISTS devices (
            device_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, client_id TEXT NOT NULL UNIQUE, name TEXT, metadata TEXT,
            registration_token_id TEXT NOT NULL, registration_token_expires_at INTEGER NOT NULL, registered_at INTEGER NOT NULL);
        """;

    private const string FindToken = "SELECT org_id, auto_approve, expires_at FROM provisioning_tokens WHERE token_hash = $hash";

    private const string UpsertDevice = """
        INSERT INTO devices (device_id, org_id, client_id, name, metadata, registration_token_id, registration_token_expires_at, registered_at)
        VALUES ($device, $org, $client, $name, $metadata, $jti, $expires, $now)
        ON CONFLICT(device_id) DO UPDATE SET name = excluded.name, metadata = excluded.metadata,
            registration_token_id = excluded.registration_token_id,
            registration_token_expires_at = excluded.registration_token_expires_at, registered_at = excluded.registered_at
        """;

    private readonly SqliteDatabase _database;
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly SigningCredentials _credentials;
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };

    // Stands in for the device lookup a re-registration makes (the registry's read by client ID): cheaper than any read,
    // so the floor stays below what the server can do.
    private readonly ConcurrentDictionary<string, string> _deviceIds = new(StringComparer.Ordinal);
    private const string KeyId = "bench-floor-1";

    private RegistrationFloor(SqliteDatabase database)
    {
        _database = database;
        _credentials = new SigningCredentials(new ECDsaSecurityKey(_key) { KeyId = KeyId }, SecurityAlgorithms.EcdsaSha256);
        KeySet = new ServerKeySet([ServerKeyConversions.ToServerKey(_key, KeyId)]);
    }

    /// <summary>The floor's public key, as a server publishes its key set: what the requesters verify with.</summary>
    public ServerKeySet KeySet { get; }

    /// <summary>Opens the floor on a fresh SQLite file in <paramref name="folder"/>, with one row for <paramref name="provisioningToken"/>.</summary>
    public static async Task<RegistrationFloor> CreateAsync(string folder, string provisioningToken, string orgId)
    {
        // The registry's group commit, gathering included (see SqliteRegistry).
        var database = new SqliteDatabase(Path.Combine(folder, $"floor-{Guid.NewGuid():N}.db"), SqliteDurability.Full) { GatherWrites = true };
        database.ExecuteScript(Schema);
        await database.WriteAsync(w => w.Execute(
            "INSERT INTO provisioning_tokens (token_hash, org_id, auto_approve, expires_at) VALUES ($hash, $org, 1, NULL)",
            ("$hash", Hash(provisioningToken)),
            ("$org", orgId))).ConfigureAwait(false);
        return new RegistrationFloor(database);
    }

    /// <summary>Does a registration's unavoidable work for <paramref name="request"/> and returns the answer's payload.</summary>
    public async Task<byte[]> AnswerAsync(ReadOnlyMemory<byte> request)
    {
        var now = DateTimeOffset.FromUnixTimeSeconds(TimeProvider.System.GetUtcNow().ToUnixTimeSeconds());
        var registration = JsonSerializer.Deserialize(request.Span, EnrollJsonContext.Default.RegistrationRequest);
        if (registration is not { ClientId: { } clientId, ProvisioningToken: { } token })
        {
            return Error(ErrorCodes.InvalidRequest, "client_id and provisioning_token are required", registration?.RequestId);
        }

        var hash = Hash(token);
        var orgId = _database.Read(r =>
        {
            using var reader = r.Command(FindToken, ("$hash", hash)).ExecuteReader();
            return reader.Read() && reader.GetInt64(1) == 1 && (reader.IsDBNull(2) || reader.GetInt64(2) > now.ToUnixTimeSeconds())
                ? reader.GetString(0)
                : null;
        });
        if (orgId is null)
        {
            return Error(ErrorCodes.Unauthorized, "unknown provisioning token", registration.RequestId);
        }

        var deviceId = _deviceIds.GetOrAdd(clientId, _ => $"dev-{Guid.CreateVersion7():N}");
        var access = Issue(TokenTypes.Access, TokenAudiences.Broker, deviceId, orgId, clientId, now, AccessTokenLifetime);
        var registrationToken = Issue(TokenTypes.Registration, TokenAudiences.Registration, deviceId, orgId, clientId, now, RegistrationTokenLifetime);
        var metadata = registration.Metadata is null ? null : JsonSerializer.Serialize(registration.Metadata, EnrollJsonContext.Default.DictionaryStringJsonElement);
        await _database.WriteAsync(w => w.Command(
            UpsertDevice,
            ("$device", deviceId),
            ("$org", orgId),
            ("$client", clientId),
            ("$name", registration.DeviceName),
            ("$metadata", metadata),
            ("$jti", registrationToken.TokenId),
            ("$expires", registrationToken.ExpiresAt.ToUnixTimeSeconds()),
            ("$now", now.ToUnixTimeSeconds())).ExecuteNonQuery()).ConfigureAwait(false);

        return JsonSerializer.SerializeToUtf8Bytes(
            new RegistrationResponse
            {
                DeviceId = deviceId,
                JwtToken = access.Token,
                ExpiresAt = access.ExpiresAt,
                RegistrationToken = registrationToken.Token,
                RegistrationTokenExpiresAt = registrationToken.ExpiresAt,
                RequestId = registration.RequestId,
            },
            EnrollJsonContext.Default.RegistrationResponse);
    }

    public async ValueTask DisposeAsync()
    {
        await _database.DisposeAsync().ConfigureAwait(false);
        _key.Dispose();
    }

    private (string Token, string TokenId, DateTimeOffset ExpiresAt) Issue(
        string type, string audience, string deviceId, string orgId, string clientId, DateTimeOffset now, TimeSpan lifetime)
    {
        var expires = now + lifetime;
        var tokenId = NewTokenId();
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = ProtocolDefaults.Issuer,
            Audience = audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = expires.UtcDateTime,
            TokenType = type,
            SigningCredentials = _credentials,
            Claims = new Dictionary<string, object>(StringComparer.Ordinal)
            {
                [JwtRegisteredClaimNames.Sub] = deviceId,
                [JwtRegisteredClaimNames.Jti] = tokenId,
                ["typ"] = type,
                ["org_id"] = orgId,
                ["client_id"] = clientId,
            },
        };
        return (_handler.CreateToken(descriptor), tokenId, expires);
    }

    private static string NewTokenId()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        return Base64UrlEncoder.Encode(bytes.ToArray());
    }

    private static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));

    private static byte[] Error(string code, string message, string? requestId) => JsonSerializer.SerializeToUtf8Bytes(
        new RegistrationResponse { Error = new ErrorBody(code, message), RequestId = requestId },
        EnrollJsonContext.Default.RegistrationResponse);
}
